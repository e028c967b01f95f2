//! Devices for planning: memory, bandwidth, and how KV reaches host memory.
//!
//! Figures are the vendors' published specifications (decimal GB and GB/s).
//! Users add their own with a TOML file (`--devices-file`):
//!
//! ```toml
//! [[device]]
//! name = "MI300X"
//! memory_gb = 192
//! bandwidth_gbs = 5300
//! host_link_gbs = 64     # optional: PCIe to host memory
//! count = 1              # optional: GPUs in the set
//! usable_fraction = 1.0  # optional: share of memory a model may use
//! ```
//!
//! Never runs anything on a device: these are specifications.

use serde::{Deserialize, Serialize};

/// One device, or a set of identical GPUs used together (tensor parallel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    /// Memory of one device, decimal GB.
    pub memory_gb: f64,
    /// Memory bandwidth of one device, GB/s.
    pub bandwidth_gbs: f64,
    /// Bandwidth to host memory (PCIe), GB/s; absent for unified memory,
    /// where "host" memory is the same memory.
    #[serde(default)]
    pub host_link_gbs: Option<f64>,
    #[serde(default = "one")]
    pub count: u32,
    /// Share of memory a model may use: 1 for GPUs (the runtime's own
    /// overhead is counted separately); 0.75 on Apple silicon, whose GPU may
    /// by default wire about three quarters of unified memory.
    #[serde(default = "full")]
    pub usable_fraction: f64,
}

fn one() -> u32 {
    1
}

fn full() -> f64 {
    1.0
}

impl Device {
    /// Bytes a model may use across the set.
    #[must_use]
    pub fn usable_bytes(&self) -> f64 {
        self.memory_gb * 1e9 * self.usable_fraction * f64::from(self.count)
    }

    /// Aggregate bandwidth in bytes/s (tensor parallel reads every device's
    /// share at once; an ideal split).
    #[must_use]
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth_gbs * 1e9 * f64::from(self.count)
    }

    #[must_use]
    pub fn host_link(&self) -> Option<f64> {
        self.host_link_gbs.map(|g| g * 1e9 * f64::from(self.count))
    }
}

fn gpu(name: &str, memory_gb: f64, bandwidth_gbs: f64, pcie_gbs: f64) -> Device {
    Device {
        name: name.into(),
        memory_gb,
        bandwidth_gbs,
        host_link_gbs: Some(pcie_gbs),
        count: 1,
        usable_fraction: 1.0,
    }
}

fn unified(name: &str, memory_gb: f64, bandwidth_gbs: f64, usable_fraction: f64) -> Device {
    Device {
        name: name.into(),
        memory_gb,
        bandwidth_gbs,
        host_link_gbs: None,
        count: 1,
        usable_fraction,
    }
}

fn set(n: u32, d: &Device) -> Device {
    Device {
        name: format!("{n}x {}", d.name),
        count: n,
        ..d.clone()
    }
}

/// PCIe 5.0 x16 and 4.0 x16, one direction, GB/s.
const PCIE5: f64 = 64.0;
const PCIE4: f64 = 32.0;

/// The built-in list: single devices, then multi-GPU sets.
#[must_use]
pub fn builtin() -> Vec<Device> {
    let h100 = gpu("H100 80GB SXM", 80.0, 3350.0, PCIE5);
    let h200 = gpu("H200 141GB", 141.0, 4800.0, PCIE5);
    let b200 = gpu("B200 180GB", 180.0, 8000.0, PCIE5);
    let a100 = gpu("A100 80GB SXM", 80.0, 2039.0, PCIE4);
    let rtx4090 = gpu("RTX 4090", 24.0, 1008.0, PCIE4);
    let mut list = vec![
        h100.clone(),
        h200.clone(),
        b200.clone(),
        a100.clone(),
        gpu("L40S 48GB", 48.0, 864.0, PCIE4),
        rtx4090.clone(),
        gpu("RTX 3090", 24.0, 936.0, PCIE4),
        gpu("RTX 5090", 32.0, 1792.0, PCIE5),
        unified("Apple M4 Max 128GB", 128.0, 546.0, 0.75),
        unified("Apple M3 Ultra 512GB", 512.0, 819.0, 0.75),
        unified("DGX Spark 128GB", 128.0, 273.0, 1.0),
    ];
    list.extend([
        set(2, &h100),
        set(4, &h100),
        set(8, &h100),
        set(2, &h200),
        set(4, &h200),
        set(8, &h200),
        set(8, &b200),
        set(8, &a100),
        set(2, &rtx4090),
        set(4, &rtx4090),
    ]);
    list
}

#[derive(Debug, Deserialize)]
struct DeviceFile {
    device: Vec<Device>,
}

/// Devices from a user's TOML file.
pub fn from_toml(text: &str) -> Result<Vec<Device>, String> {
    let file: DeviceFile = toml::from_str(text).map_err(|e| e.to_string())?;
    for d in &file.device {
        if d.memory_gb <= 0.0 || d.bandwidth_gbs <= 0.0 || d.count == 0 || !(0.0..=1.0).contains(&d.usable_fraction) {
            return Err(format!(
                "device {:?}: memory, bandwidth and count must be positive, usable_fraction in 0..1",
                d.name
            ));
        }
    }
    Ok(file.device)
}

// Sizes here are sums of powers of two and small integers, exact in f64.
#[allow(clippy::float_cmp)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_list_has_what_the_issue_names() {
        let names: Vec<String> = builtin().into_iter().map(|d| d.name).collect();
        for want in [
            "H100",
            "H200",
            "B200",
            "A100",
            "L40S",
            "RTX 4090",
            "RTX 3090",
            "RTX 5090",
            "M4 Max",
            "M3 Ultra",
            "DGX Spark",
            "8x H100",
            "2x H100",
            "4x H200",
        ] {
            assert!(names.iter().any(|n| n.contains(want)), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn sets_multiply_memory_and_bandwidth() {
        let eight = builtin().into_iter().find(|d| d.name == "8x H100 80GB SXM").unwrap();
        assert_eq!(eight.usable_bytes(), 640e9);
        assert_eq!(eight.bandwidth(), 8.0 * 3350e9);
    }

    #[test]
    fn user_devices_load_from_toml_and_bad_ones_are_refused() {
        let d = from_toml("[[device]]\nname = \"MI300X\"\nmemory_gb = 192\nbandwidth_gbs = 5300\n").unwrap();
        assert_eq!((d[0].count, d[0].usable_fraction, d[0].host_link_gbs), (1, 1.0, None));
        assert!(from_toml("[[device]]\nname = \"x\"\nmemory_gb = 0\nbandwidth_gbs = 1\n").is_err());
        assert!(from_toml("not toml [").is_err());
    }
}
