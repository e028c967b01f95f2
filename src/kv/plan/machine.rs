//! This machine as a planning device: memory from /proc/meminfo and a
//! measured memory bandwidth, for `scout plan --measure`.
//!
//! Never reports a figure it did not measure or read.

use std::time::Instant;

use super::devices::Device;

/// Bytes copied per bandwidth pass: well past any CPU cache.
const COPY_BYTES: usize = 256 * 1024 * 1024;

/// Bytes per second of a large memcpy on one thread (reads and writes
/// counted), best of five passes. One thread understates what several
/// cores reach together, which keeps the estimate an honest ceiling for a
/// single-threaded decode and a floor otherwise.
#[must_use]
pub fn memory_bandwidth() -> f64 {
    let src = vec![1u8; COPY_BYTES];
    let mut dst = vec![0u8; COPY_BYTES];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * COPY_BYTES as f64 / best
}

/// Total memory in bytes (`MemTotal`), if /proc/meminfo is readable.
#[must_use]
pub fn memory_total() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// This machine as a device (CPU, unified memory).
#[must_use]
pub fn this_machine(bandwidth: f64) -> Device {
    Device {
        name: "this machine (CPU)".into(),
        memory_gb: memory_total().unwrap_or(0.0) / 1e9,
        bandwidth_gbs: bandwidth / 1e9,
        host_link_gbs: None,
        count: 1,
        usable_fraction: 1.0,
    }
}
