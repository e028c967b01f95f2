//! How many threads inference should use.
//!
//! llama.cpp's threads wait on each other: measured here, with 2 threads
//! while the other core was busy, prefill fell 2-3.5x and decode 12-36x
//! below what one thread did. So the default is the number of cores that
//! are idle right now, measured over a short interval, never the core count.

use std::time::Duration;

/// Cores idle over a 150 ms sample of /proc/stat, at least 1; the number of
/// cores where /proc/stat is not there.
#[must_use]
pub fn free_cores() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let Some(a) = cpu_times() else { return cores };
    std::thread::sleep(Duration::from_millis(150));
    let Some(b) = cpu_times() else { return cores };
    let (busy, total) = (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1));
    if total == 0 {
        return cores;
    }
    let busy_cores = (busy as f64 / total as f64 * f64::from(cores)).round() as u32;
    cores.saturating_sub(busy_cores).clamp(1, cores)
}

/// (busy, total) jiffies summed over all CPUs.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_cores_is_within_bounds() {
        let n = super::free_cores();
        let cores = std::thread::available_parallelism().unwrap().get() as u32;
        assert!((1..=cores).contains(&n), "{n} of {cores}");
    }
}
