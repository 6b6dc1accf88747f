//! Sets of 100,000 revoked serials shaped like the ones a CA accumulates.
//! Shared by the size tests and `examples/krl_bench.rs`.

use std::collections::BTreeSet;

/// How many serials each distribution revokes.
pub const COUNT: usize = 100_000;

/// splitmix64: fixed seeds, so every run (and `ssh-keygen`) sees the same sets.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is irrelevant here).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Every distribution: a short name and its serials.
pub fn all() -> Vec<(&'static str, BTreeSet<u64>)> {
    vec![
        ("dense 1..=100000", dense()),
        ("every other serial", every_other()),
        ("random sparse over 1..2^40", sparse()),
        ("ranges and singles", ranges_and_singles()),
        ("clustered, 1 in 20 over 2M", clustered()),
    ]
}

/// A CA that revoked everything it issued.
pub fn dense() -> BTreeSet<u64> {
    (1..=COUNT as u64).collect()
}

/// 1, 3, 5, …, 199999: the worst case for ranges and lists.
pub fn every_other() -> BTreeSet<u64> {
    (0..COUNT as u64).map(|i| 1 + 2 * i).collect()
}

/// Random serials spread so thin that only a list fits.
pub fn sparse() -> BTreeSet<u64> {
    let mut rng = Rng(1);
    let mut s = BTreeSet::new();
    while s.len() < COUNT {
        s.insert(rng.between(1, 1 << 40));
    }
    s
}

/// Runs of revoked serials (a user's whole session) among single revocations,
/// with gaps from adjacent to far: every subsection type is worth using.
pub fn ranges_and_singles() -> BTreeSet<u64> {
    let mut rng = Rng(2);
    let mut s = BTreeSet::new();
    let mut at = 1_000u64;
    while s.len() < COUNT {
        if rng.between(0, 9) < 3 {
            let len = rng.between(20, 2000);
            for k in 0..len {
                s.insert(at + k);
            }
            at += len;
        } else {
            s.insert(at);
            at += 1;
        }
        at += match rng.between(0, 2) {
            0 => rng.between(1, 10),
            1 => rng.between(10, 1000),
            _ => rng.between(1000, 100_000),
        };
    }
    while s.len() > COUNT {
        let last = *s.last().unwrap();
        s.remove(&last);
    }
    s
}

/// One serial in twenty, at random: bitmaps win everywhere.
pub fn clustered() -> BTreeSet<u64> {
    let mut rng = Rng(3);
    let mut s = BTreeSet::new();
    while s.len() < COUNT {
        s.insert(rng.between(1, 20 * COUNT as u64));
    }
    s
}
