//! Choosing how to write revoked serials: the smallest mix of list, range and
//! bitmap subsections.
//!
//! OpenSSH's `ssh-keygen -k` walks the runs of consecutive serials once and
//! greedily picks a subsection type per run from a bit-cost estimate. We solve
//! the same problem exactly instead: a shortest path over the runs, where each
//! step encodes a consecutive group of runs as one subsection. Every encoding
//! `ssh-keygen` can emit (that OpenSSH can read back) is one of the paths
//! considered, so ours is never larger. It also runs in linear time.
//!
//! One constraint `ssh-keygen` misses: OpenSSH reads a bitmap as an mpint of at
//! most 16384 bits (`SSHBUF_MAX_BIGNUM`). A longer bitmap makes the whole KRL
//! unreadable, and `sshd` then refuses every public-key login. We never write one.

use std::collections::{BTreeSet, VecDeque};

use crate::wire::{put_nested, put_u8, put_u64};
use crate::{
    KRL_SECTION_CERT_SERIAL_BITMAP, KRL_SECTION_CERT_SERIAL_LIST, KRL_SECTION_CERT_SERIAL_RANGE,
    KrlError,
};

/// Widest span, in serials, that one bitmap subsection may cover.
///
/// OpenSSH accepts an mpint of up to 2048 bytes, plus one leading zero byte
/// when the top bit is set. A bitmap spanning `s` serials has its top bit at
/// index `s - 1`, so it needs `s / 8 + 1` bytes: 16384 serials is the most
/// that fits (2049 bytes, the first of them zero).
pub const MAX_BITMAP_SPAN: u64 = 16384;

/// Wire bytes of a list subsection around its serials: type byte, string length.
const LIST_OVERHEAD: u128 = 1 + 4;
/// Wire bytes per serial in a list subsection.
const LIST_PER_SERIAL: u128 = 8;
/// Wire bytes of a range subsection: type byte, string length, two serials.
const RANGE_COST: u128 = 1 + 4 + 8 + 8;
/// Wire bytes of a bitmap subsection before its bits: type byte, string
/// length, offset, mpint length.
const BITMAP_HEADER: u128 = 1 + 4 + 8 + 4;

/// Consecutive revoked serials `lo..=hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

impl Run {
    fn len(self) -> u128 {
        u128::from(self.hi - self.lo) + 1
    }
}

/// One subsection of the plan, over the runs `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sub {
    /// Every serial of the runs, one by one.
    List { first: usize, last: usize },
    /// Exactly one run (a range subsection holds a single range).
    Range { run: usize },
    /// A bitmap from the first run's `lo` to the last run's `hi`.
    Bitmap { first: usize, last: usize },
}

/// Splits sorted serials into maximal runs, leaving out 0: OpenSSH treats 0 as
/// "no serial" and rejects a KRL that revokes it.
pub(crate) fn runs(serials: &BTreeSet<u64>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for &s in serials.range(1..) {
        match out.last_mut() {
            Some(run) if run.hi + 1 == s => run.hi = s,
            _ => out.push(Run { lo: s, hi: s }),
        }
    }
    out
}

/// Bytes of a bitmap subsection spanning `span` serials (see [`bitmap_mpint`]).
fn bitmap_cost(span: u64) -> u128 {
    BITMAP_HEADER + u128::from(span / 8) + 1
}

/// The cheapest sequence of subsections for `runs`, and its size in bytes.
pub(crate) fn plan(runs: &[Run]) -> (Vec<Sub>, u128) {
    let n = runs.len();
    // cost[k]: fewest bytes that encode runs[..k]; choice[k]: the last
    // subsection of that encoding.
    let mut cost: Vec<u128> = Vec::with_capacity(n + 1);
    let mut choice: Vec<Sub> = Vec::with_capacity(n + 1);
    cost.push(0);
    choice.push(Sub::Range { run: 0 }); // unused sentinel for k = 0
    // serials_before[k]: how many serials runs[..k] hold.
    let mut serials_before: u128 = 0;

    // A list over runs[j..=i] costs cost[j] + LIST_OVERHEAD + 8 * (serials in
    // runs[j..=i]); the part that depends on j is cost[j] - 8 * serials_before[j],
    // so a running minimum of it finds the best start in O(1).
    let mut best_list: Option<(i128, usize)> = None;

    // A bitmap over runs[j..=i] spans A - lo_j serials, A = hi_i + 1. With
    // A = 8a + ra and lo_j = 8b + rl, (A - lo_j) / 8 = a - b - [rl > ra]. So per
    // residue rl the part that depends on j is cost[j] - b: a sliding-window
    // minimum (the window being lo_j >= A - MAX_BITMAP_SPAN) per residue.
    let mut windows: [VecDeque<(usize, i128)>; 8] = Default::default();

    for (i, run) in runs.iter().enumerate() {
        let here = cost[i];
        let key = here as i128 - (LIST_PER_SERIAL * serials_before) as i128;
        if best_list.is_none_or(|(best, _)| key < best) {
            best_list = Some((key, i));
        }
        let window = &mut windows[(run.lo & 7) as usize];
        let key = here as i128 - i128::from(run.lo >> 3);
        while window.back().is_some_and(|&(_, k)| k >= key) {
            window.pop_back();
        }
        window.push_back((i, key));

        serials_before += run.len();
        let end = u128::from(run.hi) + 1; // A
        let (a, ra) = (end >> 3, (end & 7) as u64);

        let mut best = (here + RANGE_COST, Sub::Range { run: i });

        for (rl, window) in windows.iter_mut().enumerate() {
            while let Some(&(j, _)) = window.front() {
                if end - u128::from(runs[j].lo) > u128::from(MAX_BITMAP_SPAN) {
                    window.pop_front();
                } else {
                    break;
                }
            }
            if let Some(&(j, k)) = window.front() {
                let borrow = i128::from(rl as u64 > ra);
                let c = (k + a as i128 - borrow) as u128 + BITMAP_HEADER + 1;
                debug_assert_eq!(c, cost[j] + bitmap_cost(runs[i].hi - runs[j].lo + 1));
                if c < best.0 {
                    best = (c, Sub::Bitmap { first: j, last: i });
                }
            }
        }

        if let Some((k, j)) = best_list {
            let c = (k + (LIST_PER_SERIAL * serials_before) as i128) as u128 + LIST_OVERHEAD;
            if c < best.0 {
                best = (c, Sub::List { first: j, last: i });
            }
        }

        cost.push(best.0);
        choice.push(best.1);
    }

    let mut subs = Vec::new();
    let mut k = n;
    while k > 0 {
        let sub = choice[k];
        k = match sub {
            Sub::List { first, .. } | Sub::Bitmap { first, .. } => first,
            Sub::Range { run } => run,
        };
        subs.push(sub);
    }
    subs.reverse();
    (subs, cost[n])
}

/// Appends the subsections of `plan` (type byte and string each) to `out`.
pub(crate) fn write(out: &mut Vec<u8>, runs: &[Run], plan: &[Sub]) -> Result<(), KrlError> {
    for sub in plan {
        match *sub {
            Sub::List { first, last } => {
                put_u8(out, KRL_SECTION_CERT_SERIAL_LIST);
                put_nested(out, "a serial list", |out| {
                    for run in &runs[first..=last] {
                        for s in run.lo..=run.hi {
                            put_u64(out, s);
                        }
                    }
                    Ok(())
                })?;
            }
            Sub::Range { run } => {
                put_u8(out, KRL_SECTION_CERT_SERIAL_RANGE);
                put_nested(out, "a serial range", |out| {
                    put_u64(out, runs[run].lo);
                    put_u64(out, runs[run].hi);
                    Ok(())
                })?;
            }
            Sub::Bitmap { first, last } => {
                put_u8(out, KRL_SECTION_CERT_SERIAL_BITMAP);
                put_nested(out, "a serial bitmap", |out| {
                    let offset = runs[first].lo;
                    put_u64(out, offset);
                    out.extend_from_slice(&bitmap_mpint(offset, &runs[first..=last]));
                    Ok(())
                })?;
            }
        }
    }
    Ok(())
}

/// The mpint (length included) whose bit `s - offset` is set for each serial
/// `s` of `runs`. Big-endian, so bit 0 is the low bit of the last byte. The
/// top set bit is at `span - 1`, which needs `span / 8 + 1` bytes; when it is a
/// byte's high bit that count includes the leading zero that keeps the mpint
/// positive, and otherwise no leading zero byte is written: the minimal form.
fn bitmap_mpint(offset: u64, runs: &[Run]) -> Vec<u8> {
    let span = runs[runs.len() - 1].hi - offset + 1;
    debug_assert!(span <= MAX_BITMAP_SPAN);
    let len = (span / 8 + 1) as usize;
    let mut out = vec![0u8; 4 + len];
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    let bits = &mut out[4..];
    for run in runs {
        for bit in (run.lo - offset)..=(run.hi - offset) {
            bits[len - 1 - (bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn set(serials: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
        serials.into_iter().collect()
    }

    /// splitmix64: a fixed, dependency-free stream so failures reproduce.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The cheapest encoding by trying every split of the runs into groups
    /// and every subsection type per group: the definition `plan` must meet.
    fn brute_force(runs: &[Run]) -> u128 {
        fn best_from(runs: &[Run], start: usize) -> u128 {
            if start == runs.len() {
                return 0;
            }
            let mut best = u128::MAX;
            for end in start..runs.len() {
                let group = &runs[start..=end];
                let rest = best_from(runs, end + 1);
                let serials: u128 = group.iter().map(|r| r.len()).sum();
                best = best.min(rest + LIST_OVERHEAD + LIST_PER_SERIAL * serials);
                let span = group[group.len() - 1].hi - group[0].lo + 1;
                if span <= MAX_BITMAP_SPAN {
                    best = best.min(rest + bitmap_cost(span));
                }
                if group.len() == 1 {
                    best = best.min(rest + RANGE_COST);
                }
            }
            best
        }
        best_from(runs, 0)
    }

    fn written(runs: &[Run]) -> Vec<u8> {
        let (subs, _) = plan(runs);
        let mut out = Vec::new();
        write(&mut out, runs, &subs).unwrap();
        out
    }

    #[test]
    fn runs_merge_neighbours_and_drop_zero() {
        let r = runs(&set([0, 1, 2, 3, 5, 7, 8, u64::MAX - 1, u64::MAX]));
        assert_eq!(
            r,
            vec![
                Run { lo: 1, hi: 3 },
                Run { lo: 5, hi: 5 },
                Run { lo: 7, hi: 8 },
                Run {
                    lo: u64::MAX - 1,
                    hi: u64::MAX
                },
            ]
        );
        assert!(runs(&set([0])).is_empty());
    }

    #[test]
    fn one_serial_is_a_list_of_one() {
        let r = runs(&set([42]));
        assert_eq!(plan(&r), (vec![Sub::List { first: 0, last: 0 }], 13));
        assert_eq!(
            written(&r),
            [&[0x20, 0, 0, 0, 8][..], &42u64.to_be_bytes()].concat()
        );
    }

    #[test]
    fn a_long_run_is_a_range() {
        let r = runs(&(1..=100_000).collect());
        assert_eq!(plan(&r), (vec![Sub::Range { run: 0 }], 21));
        let mut want = vec![0x21, 0, 0, 0, 16];
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(&100_000u64.to_be_bytes());
        assert_eq!(written(&r), want);
    }

    #[test]
    fn close_serials_are_a_bitmap() {
        // The same set `ssh-keygen -k` writes as offset 5, mpint 02 80 1d.
        let r = runs(&set([5, 7, 8, 9, 20, 22]));
        assert_eq!(plan(&r).0, vec![Sub::Bitmap { first: 0, last: 3 }]);
        let mut want = vec![0x22, 0, 0, 0, 15];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 3, 0x02, 0x80, 0x1d]);
        assert_eq!(written(&r), want);
    }

    #[test]
    fn bitmap_gets_a_leading_zero_exactly_when_its_top_bit_is_a_high_bit() {
        // span 8: top bit 7 is the high bit of its byte, so 00 ff.
        assert_eq!(
            bitmap_mpint(1, &runs(&(1..=8).collect())),
            [0, 0, 0, 2, 0, 0xff]
        );
        // span 7: 7f, no padding.
        assert_eq!(
            bitmap_mpint(1, &runs(&(1..=7).collect())),
            [0, 0, 0, 1, 0x7f]
        );
        // span 9: 01 ff.
        assert_eq!(
            bitmap_mpint(1, &runs(&set([1, 2, 3, 4, 5, 6, 7, 8, 9]))),
            [0, 0, 0, 2, 1, 0xff]
        );
    }

    #[test]
    fn bitmaps_never_span_more_than_openssh_reads() {
        // Every other serial: one ssh-keygen bitmap of 200,000 bits, which
        // OpenSSH cannot read back; ours is split at the limit.
        let r = runs(&(0..100_000).map(|i| 1 + 2 * i).collect());
        let (subs, _) = plan(&r);
        assert!(subs.len() > 1);
        for sub in &subs {
            let Sub::Bitmap { first, last } = *sub else {
                panic!("every-other serials should be all bitmaps, got {sub:?}");
            };
            assert!(r[last].hi - r[first].lo < MAX_BITMAP_SPAN);
        }
        // 8192 serials (span 16383) per full bitmap: 12 of them and one of 1696.
        assert_eq!(subs.len(), 13);
    }

    #[test]
    fn a_bitmap_may_span_exactly_the_limit() {
        let r = runs(&set([1, MAX_BITMAP_SPAN]));
        assert_eq!(plan(&r).0, vec![Sub::List { first: 0, last: 1 }]);
        // Dense enough that a bitmap wins: 2049 bytes against a 4 kB list.
        let s: BTreeSet<u64> = (1..=MAX_BITMAP_SPAN)
            .filter(|s| s % 2 == 1)
            .chain([MAX_BITMAP_SPAN])
            .collect();
        let r = runs(&s);
        let (subs, _) = plan(&r);
        assert_eq!(
            subs,
            vec![Sub::Bitmap {
                first: 0,
                last: r.len() - 1
            }]
        );
        let out = written(&r);
        assert_eq!(out.len() as u128, bitmap_cost(MAX_BITMAP_SPAN));
        assert_eq!(&out[13..17], &2049u32.to_be_bytes());
        assert_eq!(out[17], 0);
        // Serials 16377..=16384 are bits 16376..=16383: odd ones plus the top bit.
        assert_eq!(out[18], 0b1101_0101);
    }

    #[test]
    fn plan_cost_is_the_written_size() {
        let mut rng = Rng(7);
        for _ in 0..300 {
            let mut s = BTreeSet::new();
            let mut at = 1 + rng.below(1000);
            for _ in 0..rng.below(200) {
                let max = if rng.below(4) == 0 { 40 } else { 2 };
                let len = 1 + rng.below(max);
                for k in 0..len {
                    s.insert(at + k);
                }
                let gap = [1, 3, 30, 200, 5000, 1 << 40][rng.below(6) as usize];
                at += len + gap;
            }
            let r = runs(&s);
            let (_, cost) = plan(&r);
            assert_eq!(written(&r).len() as u128, cost);
        }
    }

    #[test]
    fn plan_is_optimal_against_brute_force() {
        let mut rng = Rng(11);
        for case in 0..3000 {
            let n = 1 + rng.below(9);
            let mut r = Vec::new();
            let mut at = 1 + rng.below(20);
            // Gap scales straddle every break-even point, including the bitmap limit.
            let scale = [2, 8, 64, 600, 4000, 9000][case % 6];
            for _ in 0..n {
                let max = if rng.below(3) == 0 { 30 } else { 3 };
                let len = 1 + rng.below(max);
                r.push(Run {
                    lo: at,
                    hi: at + len - 1,
                });
                at += len + 1 + rng.below(scale);
            }
            assert_eq!(plan(&r).1, brute_force(&r), "runs {r:?}");
        }
    }

    #[test]
    fn serials_at_the_top_of_the_range_do_not_overflow() {
        let r = runs(&set([u64::MAX - 20, u64::MAX - 3, u64::MAX - 1, u64::MAX]));
        let (_, cost) = plan(&r);
        assert_eq!(written(&r).len() as u128, cost);
        let r = runs(&(u64::MAX - 1000..=u64::MAX).collect());
        assert_eq!(plan(&r).0, vec![Sub::Range { run: 0 }]);
    }
}
