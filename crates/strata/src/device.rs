//! Devices and the default device.
//!
//! The default is the best device this build can use (DESIGN.md): CUDA (with the `cuda`
//! feature and a working driver and GPU), then a hardware GPU through wgpu (the `wgpu` feature:
//! Metal on a Mac, Vulkan or DX12 elsewhere; never a software adapter such as lavapipe, which
//! is slower than the CPU backend), then the CPU. The first call to [`default_device`] opens
//! them in that order, so without CUDA it also asks the graphics drivers for their adapters.
//! [`Device::describe`] says which adapter it is. `STRATA_DEVICE=cpu|cuda|wgpu` overrides the
//! choice; an unusable `STRATA_DEVICE` is reported once on stderr before falling back to the
//! CPU. Arrays on different devices can be combined:
//! an input on another device is copied to the node's device when the node runs, and the copy
//! is recorded in the flight recorder as a `cross-device copy` instant.
//!
//! A primitive the device has no kernel for yet (`Error::NotImplemented` from its backend)
//! runs on the CPU instead, never silently: the first time per primitive it is said on stderr,
//! and every time a `cpu fallback` instant goes into the flight recorder (next to the two
//! `cross-device copy` instants). `STRATA_FALLBACK=error` turns the fallback off, so such a
//! program fails with the backend's error instead.

use std::sync::Mutex;

use strata_core::{Error, Result};

/// Where an array's data lives and its primitives run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host, through `strata-cpu`.
    Cpu,
    /// The first CUDA GPU, through `strata-cuda` (the `cuda` feature).
    #[cfg(feature = "cuda")]
    Cuda,
    /// A GPU through wgpu (Vulkan, Metal, DX12; the `wgpu` feature): the best hardware adapter,
    /// or the one `STRATA_WGPU_ADAPTER` names (`software` for lavapipe).
    #[cfg(feature = "wgpu")]
    Wgpu,
}

impl Device {
    /// The device called `name` (`"cpu"`, `"cuda"`), or an error saying why it is not
    /// available.
    pub fn from_name(name: &str) -> Result<Device> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            #[cfg(feature = "cuda")]
            "cuda" | "gpu" => cuda().map(|_| Device::Cuda),
            #[cfg(feature = "wgpu")]
            "wgpu" | "metal" | "vulkan" | "dx12" => wgpu().map(|_| Device::Wgpu),
            #[allow(unreachable_patterns)]
            other @ ("cuda" | "gpu" | "wgpu" | "metal" | "vulkan" | "dx12") => Err(Error::InvalidArgument {
                op: "Device::from_name",
                message: format!(
                    "this build of strata has no {other} backend (the `cuda` and `wgpu` features enable them)"
                ),
            }),
            other => Err(Error::InvalidArgument {
                op: "Device::from_name",
                message: format!("unknown device {other:?}; expected cpu, cuda or wgpu"),
            }),
        }
    }

    /// The device and what it runs on, for reports: `cuda: NVIDIA H200 (sm_90a)`, `wgpu: Apple
    /// M2 Max through Metal`, `wgpu: llvmpipe through Vulkan (a software adapter)`, `cpu`; a
    /// device that cannot be opened says why.
    ///
    /// ```
    /// let d = strata::default_device();
    /// assert!(d.describe().starts_with(d.name()));
    /// ```
    pub fn describe(self) -> String {
        match self {
            Device::Cpu => "cpu".to_owned(),
            #[cfg(feature = "cuda")]
            Device::Cuda => match cuda() {
                Ok(c) => format!("cuda: {} ({})", c.device_name(), c.arch()),
                Err(e) => format!("cuda: not usable ({e})"),
            },
            #[cfg(feature = "wgpu")]
            Device::Wgpu => match wgpu() {
                Ok(w) => format!("wgpu: {}", w.describe()),
                Err(e) => format!("wgpu: not usable ({e})"),
            },
        }
    }

    /// Whether this is a GPU API running on the CPU: wgpu on a software adapter (Mesa's
    /// lavapipe, Microsoft's WARP). Such a device works but is slower than the CPU backend, so
    /// it is never the default.
    ///
    /// ```
    /// assert!(!strata::Device::Cpu.is_software());
    /// ```
    pub fn is_software(self) -> bool {
        match self {
            #[cfg(feature = "wgpu")]
            Device::Wgpu => wgpu().is_ok_and(|w| w.is_software()),
            _ => false,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            #[cfg(feature = "cuda")]
            Device::Cuda => "cuda",
            #[cfg(feature = "wgpu")]
            Device::Wgpu => "wgpu",
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The process's CUDA device (opened on first use; the error, if it cannot be, is kept).
#[cfg(feature = "cuda")]
pub(crate) fn cuda() -> Result<&'static strata_cuda::Cuda> {
    static CUDA: std::sync::OnceLock<Result<strata_cuda::Cuda>> = std::sync::OnceLock::new();
    CUDA.get_or_init(|| strata_cuda::Cuda::new(0)).as_ref().map_err(Clone::clone)
}

/// The process's wgpu device (opened on first use; the error, if it cannot be, is kept).
#[cfg(feature = "wgpu")]
pub(crate) fn wgpu() -> Result<&'static strata_wgpu::Wgpu> {
    static WGPU: std::sync::OnceLock<Result<strata_wgpu::Wgpu>> = std::sync::OnceLock::new();
    WGPU.get_or_init(strata_wgpu::Wgpu::new).as_ref().map_err(Clone::clone)
}

/// Whether a primitive without a kernel on its device may run on the CPU (`STRATA_FALLBACK`
/// is not `error`).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) fn cpu_fallback() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| !std::env::var("STRATA_FALLBACK").is_ok_and(|v| v.eq_ignore_ascii_case("error")))
}

static DEFAULT: Mutex<Option<Device>> = Mutex::new(None);

/// The best device this build and machine have.
fn best() -> Device {
    #[cfg(feature = "cuda")]
    if cuda().is_ok() {
        return Device::Cuda;
    }
    // 64-bit types and a few operations have no WGSL kernel: they run on the CPU through the
    // visible fallback (module docs). MLX, too, runs float64 only on the CPU.
    #[cfg(feature = "wgpu")]
    if wgpu().is_ok_and(|w| !w.is_software()) {
        return Device::Wgpu;
    }
    Device::Cpu
}

/// The device new arrays are created on.
pub fn default_device() -> Device {
    let mut d = DEFAULT.lock().unwrap_or_else(|e| e.into_inner());
    *d.get_or_insert_with(|| match std::env::var("STRATA_DEVICE") {
        Ok(name) => Device::from_name(&name).unwrap_or_else(|e| {
            eprintln!("strata: STRATA_DEVICE={name:?} is not usable ({e}); using the CPU");
            Device::Cpu
        }),
        Err(_) => best(),
    })
}

/// Makes `device` the default for arrays created from now on.
pub fn set_default_device(device: Device) {
    *DEFAULT.lock().unwrap_or_else(|e| e.into_inner()) = Some(device);
}
