//! Helpers the benchmarks share (a module of each bench target, not a target itself).

use std::time::{Duration, Instant};

pub fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

pub fn median(n: usize, mut f: impl FnMut(usize)) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// This process's peak resident memory, from /proc (Linux).
pub fn peak_rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ? kB");
    let kb: f64 = hwm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    format!("{:.0} MB", kb * 1024.0 / 1e6)
}

/// The number after `name` among the command line's `args`, else `default`.
pub fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
