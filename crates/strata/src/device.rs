//! Devices and the default device.
//!
//! The default is the best device this build can use: CUDA, then a hardware wgpu adapter,
//! then the CPU (DESIGN.md). `STRATA_DEVICE=cpu|cuda|wgpu` overrides it. This build has the
//! CPU backend only; asking for another device is an error from [`Device::from_name`], and
//! an unusable `STRATA_DEVICE` is reported once on stderr before falling back to the CPU.

use std::sync::Mutex;

use strata_core::{Error, Result};

/// Where an array's data lives and its primitives run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host, through `strata-cpu`.
    Cpu,
}

impl Device {
    /// The device called `name` (`"cpu"`), or an error saying why it is not available.
    pub fn from_name(name: &str) -> Result<Device> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            other @ ("cuda" | "gpu" | "wgpu" | "metal" | "vulkan") => Err(Error::InvalidArgument {
                op: "Device::from_name",
                message: format!("this build of strata has no {other} backend yet; the CPU is the only device"),
            }),
            other => Err(Error::InvalidArgument {
                op: "Device::from_name",
                message: format!("unknown device {other:?}; expected cpu, cuda or wgpu"),
            }),
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

static DEFAULT: Mutex<Option<Device>> = Mutex::new(None);

/// The device new arrays are created on.
pub fn default_device() -> Device {
    let mut d = DEFAULT.lock().unwrap_or_else(|e| e.into_inner());
    *d.get_or_insert_with(|| match std::env::var("STRATA_DEVICE") {
        Ok(name) => Device::from_name(&name).unwrap_or_else(|e| {
            eprintln!("strata: STRATA_DEVICE={name:?} is not usable ({e}); using the CPU");
            Device::Cpu
        }),
        Err(_) => Device::Cpu,
    })
}

/// Makes `device` the default for arrays created from now on.
pub fn set_default_device(device: Device) {
    *DEFAULT.lock().unwrap_or_else(|e| e.into_inner()) = Some(device);
}
