//! What /proc says about processes: CPU time (of one process, of a process tree), resident
//! and proportional memory, children.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// The fields of /proc/PID/stat the harness needs (times in clock ticks).
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub pid: u32,
    pub ppid: u32,
    pub state: char,
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
}

impl Stat {
    /// CPU of the process itself and of every child it has reaped (and they of theirs).
    pub fn with_reaped(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let pid = text.split_whitespace().next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14.
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        pid,
        ppid: n(4)? as u32,
        state: f.first()?.chars().next()?,
        utime: n(14)?,
        stime: n(15)?,
        cutime: n(16)?,
        cstime: n(17)?,
    })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

pub fn ticks_to_ms(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / ticks_per_second() as f64
}

/// Every process on the machine.
pub fn all() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// `root` and all its live descendants.
pub fn tree(root: u32) -> Vec<Stat> {
    let all = all();
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, s) in all.iter().enumerate() {
        children.entry(s.ppid).or_default().push(i);
    }
    let mut out = Vec::new();
    let Some(top) = all.iter().find(|s| s.pid == root) else {
        return out;
    };
    let mut todo = vec![*top];
    while let Some(s) = todo.pop() {
        if let Some(kids) = children.get(&s.pid) {
            todo.extend(kids.iter().map(|&i| all[i]));
        }
        out.push(s);
    }
    out
}

/// CPU used so far by the process tree under `root`: each live process's own time plus what
/// it has reaped. A child's time reaches its parent's `cutime`/`cstime` only when reaped, so
/// the live ones are added one by one; a process reaped between two reads can be missed or
/// counted twice, so read this while the tree is quiet (see [`settle`]).
pub fn tree_cpu_ticks(root: u32) -> u64 {
    tree(root).iter().map(Stat::with_reaped).sum()
}

/// Waits (at most `limit`) until the tree under `root` holds exactly `expected` processes and
/// no zombie: connections set up or torn down meanwhile are finished and reaped.
pub fn settle(root: u32, expected: usize, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let t = tree(root);
        if t.len() == expected && t.iter().all(|s| s.state != 'Z') {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `Name:   123 kB` line of /proc/PID/status or smaps_rollup, in KiB.
fn kib_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resident memory (VmRSS), KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS")
}

/// Peak resident memory (VmHWM), KiB.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmHWM")
}

/// Proportional set size (shared pages divided among their users), KiB.
pub fn pss_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss")
}

/// Open descriptors of `pid` that are sockets.
pub fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 11 13 20 0 1 0 1 2 3";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.pid, s.ppid, s.state), (4242, 1, 'S'));
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (7, 3, 11, 13));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(stat(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
        assert!(tree(me).iter().any(|s| s.pid == me));
    }
}
