//! The proxy's own cost, read from /proc: CPU time and memory summed over
//! its process tree (danted forks children; microsocks and sixsocks use
//! threads, which /proc/PID/stat already sums).

use std::collections::HashSet;
use std::fs;
use std::io;

/// A snapshot of a process tree's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// utime + stime + cutime + cstime over the tree, in clock ticks.
    pub cpu_ticks: u64,
    /// Sum of `Rss:` over the tree, KiB (shared pages counted once per process).
    pub rss_kib: u64,
    /// Sum of `Pss:` over the tree, KiB (shared pages divided among sharers).
    pub pss_kib: u64,
    /// Sum of `Pss_Anon:` over the tree, KiB: the heap and stacks, without
    /// the program's code and other file pages (which a first connection
    /// faults in once, and which the page cache can drop).
    pub anon_kib: u64,
    /// Processes in the tree.
    pub procs: usize,
}

impl Usage {
    /// CPU seconds of the tree.
    pub fn cpu_secs(&self) -> f64 {
        self.cpu_ticks as f64 / clock_ticks() as f64
    }
}

/// `pid` and all its descendants, found through
/// /proc/PID/task/TID/children (children of every thread).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut seen: HashSet<u32> = HashSet::from([pid]);
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(children) = fs::read_to_string(t.path().join("children")) else {
                continue;
            };
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if seen.insert(c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Parses the CPU fields out of a /proc/PID/stat line: utime + stime +
/// cutime + cstime (fields 14 to 17), in clock ticks. cutime and cstime
/// hold children that exited and were reaped, so a forking server's
/// short-lived children are not lost.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // f[0] is field 3 (state), so field n is f[n - 3].
    let mut sum = 0u64;
    for n in 14..=17 {
        let v: i64 = f.get(n - 3)?.parse().ok()?;
        sum += u64::try_from(v).ok()?;
    }
    Some(sum)
}

/// Parses `Rss:`, `Pss:` and `Pss_Anon:` (KiB) out of
/// /proc/PID/smaps_rollup.
pub fn parse_rollup(s: &str) -> (u64, u64, u64) {
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"), field("Pss_Anon:"))
}

/// Usage of `pid`'s tree now. Fails if `pid` itself is gone; descendants
/// that vanish while being read are skipped.
pub fn snapshot(pid: u32) -> io::Result<Usage> {
    let root = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    if parse_stat_cpu(&root).is_none() {
        return Err(io::Error::other(format!("cannot parse /proc/{pid}/stat")));
    }
    let mut u = Usage::default();
    for p in tree(pid) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(cpu) = parse_stat_cpu(&stat) else {
            continue;
        };
        u.cpu_ticks += cpu;
        u.procs += 1;
        if let Ok(r) = fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            let (rss, pss, anon) = parse_rollup(&r);
            u.rss_kib += rss;
            u.pss_kib += pss;
            u.anon_kib += anon;
        }
    }
    Ok(u)
}

/// Clock ticks per second for /proc/PID/stat (USER_HZ). It is 100 on every
/// Linux architecture in use; `getconf CLK_TCK` is asked once to be sure.
pub fn clock_ticks() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// TCP counters of this process's network namespace that tell a stalled
/// proxy from a starved kernel: retransmission timeouts and friends.
pub const TCP_COUNTERS: &[&str] = &[
    "Tcp.RetransSegs",
    "TcpExt.TCPTimeouts",
    "TcpExt.TCPLossProbes",
    "TcpExt.TCPMemoryPressures",
    "TcpExt.TCPRcvQDrop",
    "TcpExt.TCPZeroWindowDrop",
    "TcpExt.TCPBacklogDrop",
    "TcpExt.ListenOverflows",
];

/// Parses the "Name: k1 k2\nName: v1 v2" pairs of /proc/net/snmp and
/// /proc/net/netstat into "Name.key" → value.
pub fn parse_net_counters(s: &str, out: &mut std::collections::BTreeMap<String, u64>) {
    let lines: Vec<&str> = s.lines().collect();
    for pair in lines.chunks(2) {
        let [keys, values] = pair else { continue };
        let (Some((kp, ks)), Some((vp, vs))) = (keys.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if kp != vp {
            continue;
        }
        for (k, v) in ks.split_whitespace().zip(vs.split_whitespace()) {
            if let Ok(v) = v.parse::<i64>() {
                out.insert(format!("{kp}.{k}"), v.max(0) as u64);
            }
        }
    }
}

/// The [`TCP_COUNTERS`] now (missing ones are left out).
/// The TCP congestion control new connections of this network namespace
/// get (`net.ipv4.tcp_congestion_control`), if it can be read.
pub fn congestion_control() -> Option<String> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn tcp_counters() -> std::collections::BTreeMap<String, u64> {
    let mut all = std::collections::BTreeMap::new();
    for f in ["/proc/net/snmp", "/proc/net/netstat"] {
        if let Ok(s) = fs::read_to_string(f) {
            parse_net_counters(&s, &mut all);
        }
    }
    all.retain(|k, _| TCP_COUNTERS.contains(&k.as_str()));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_name() {
        let line = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18";
        // after ')': S=3 1=4 2=5 ... field 14 is "11", 15 "12", 16 "13", 17 "14"
        assert_eq!(parse_stat_cpu(line), Some(11 + 12 + 13 + 14));
        assert_eq!(parse_stat_cpu("garbage"), None);
        assert_eq!(parse_stat_cpu("1 (x) S 1 2"), None);
    }

    #[test]
    fn net_counters() {
        let s =
            "Tcp: RtoAlgorithm RetransSegs InErrs\nTcp: 1 42 -3\nTcpExt: TCPTimeouts\nTcpExt: 7\n";
        let mut m = std::collections::BTreeMap::new();
        parse_net_counters(s, &mut m);
        assert_eq!(m.get("Tcp.RetransSegs"), Some(&42));
        assert_eq!(m.get("Tcp.InErrs"), Some(&0));
        assert_eq!(m.get("TcpExt.TCPTimeouts"), Some(&7));
        assert!(tcp_counters().contains_key("Tcp.RetransSegs"));
    }

    #[test]
    fn rollup() {
        let s = "00400000-7ffd [rollup]\nRss:                5120 kB\nPss:                 812 kB\nPss_Anon: 3 kB\n";
        assert_eq!(parse_rollup(s), (5120, 812, 3));
        assert_eq!(parse_rollup(""), (0, 0, 0));
    }

    #[test]
    fn own_process_and_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        let t = tree(me);
        assert!(t.contains(&me));
        assert!(t.contains(&child.id()), "child missing from {t:?}");
        let u = snapshot(me).unwrap();
        assert!(u.procs >= 2);
        assert!(u.rss_kib > 0);
        assert!(u.pss_kib > 0);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
