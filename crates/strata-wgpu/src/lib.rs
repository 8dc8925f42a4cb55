//! Strata's portable GPU backend: WGSL kernels on wgpu, which runs them through Vulkan, Metal
//! and DX12 (naga translates the WGSL to SPIR-V, MSL and HLSL).
//!
//! [`Wgpu::new`] takes the best hardware adapter (a discrete GPU, then an integrated one) and
//! never a software one unless asked: `STRATA_WGPU_ADAPTER=software` (Mesa's lavapipe, how CI
//! runs the tests) or a part of an adapter's name picks one, and [`Options`] does the same from
//! code. A machine without a usable adapter or Vulkan loader is an `Err`, never a panic.
//!
//! How it runs:
//! - Every element is stored in `array<u32>` bindings, whatever its type (8- and 16-bit values
//!   are unpacked on load and packed on store with integer arithmetic, so f16 and bf16 are
//!   exact and need no `shader-f16`); arithmetic is in f32, i32 or u32, and in i64 or u64 in the
//!   element-wise kernels where the adapter has `SHADER_INT64`. Other types wider than 32 bits
//!   are a `NotImplemented` error, which the array layer answers on the CPU.
//! - Kernels are WGSL generated per operation and type (`kernels/prelude.wgsl` holds what they
//!   share), compiled once per process into a pipeline cache.
//! - Dispatches are recorded into one command encoder and submitted in batches; uploads are
//!   copies from mapped staging buffers recorded in the same encoder, so they keep their order
//!   with the kernels; downloads submit and wait.
//! - Buffers come from a caching pool. Validation errors, out-of-memory and a lost device are
//!   `Err`s (the uncaptured-error handler, which would abort, is replaced).
//!
//! Kernels so far: copies and casts between layouts, every element-wise operation, select,
//! reductions, scans, `take_along_axis`/`scatter_add` (with the indices checked first),
//! Threefry random bits, fused element-wise programs and `matmul2d` (a tiled SIMT kernel):
//! every primitive the array layer uses. Convolution, attention and quantized products answer
//! with an `Err` that says so until they land (issue 8).
//!
//! ```no_run
//! use strata_core::kernel::{Backend, Layout, TensorMut, TensorRef, UnaryOp};
//! use strata_core::DType;
//! let gpu = strata_wgpu::Wgpu::new()?;
//! let x = gpu.upload(&[0u8, 0, 128, 63])?; // 1.0f32
//! let mut y = gpu.alloc_output(4)?;
//! let l = Layout::contiguous(&[1]);
//! gpu.unary(UnaryOp::Exp, TensorRef::new(DType::F32, &x, &l), TensorMut::new(DType::F32, &mut y, &l))?;
//! let mut out = [0u8; 4];
//! gpu.download(&y, &mut out)?;
//! assert!((f32::from_le_bytes(out) - std::f32::consts::E).abs() < 1e-6);
//! # Ok::<(), strata_core::Error>(())
//! ```

mod attention;
mod conv;
mod coop;
mod elementwise;
mod few_rows;
mod index;
mod matmul;
mod parts;
mod pool;
mod qmatmul;
mod reduce;
mod sort;
mod timing;
mod wgsl;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_core::kernel::{
    Attention, Backend, BinaryOp, Conv, Fused, Matmul2d, QuantizedMatmul, ReduceOp, Scales, ScanOp, Storage, TensorMut,
    TensorRef, UnaryOp,
};
use strata_core::quant::QuantizedTensor;
use strata_core::{Error, Result};

use pool::Pool;
pub use qmatmul::WgpuQuantized;

/// The WGSL every kernel starts with.
pub const PRELUDE: &str = include_str!("../kernels/prelude.wgsl");

fn err(op: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidArgument { op, message: message.into() }
}

/// Device memory: a block from the pool, returned to it when dropped; or a window onto part of
/// one (what a kernel binds when the whole block is larger than the device binds at once).
pub struct WgpuBuffer {
    buffer: Option<wgpu::Buffer>,
    bytes: usize,
    pool: Arc<Pool>,
    /// For a window: where it starts in the block, in bytes.
    window: Option<u64>,
}

impl Storage for WgpuBuffer {
    fn byte_len(&self) -> usize {
        self.bytes
    }
}

impl Drop for WgpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take()
            && self.window.is_none()
        {
            self.pool.give_back(b);
        }
    }
}

impl WgpuBuffer {
    /// The wgpu buffer (at least [`Storage::byte_len`] bytes, rounded up to a multiple of 4),
    /// for use with other wgpu work on [`Wgpu::device`].
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("a live buffer has its block")
    }

    /// `bytes` bytes of this buffer from byte `start` (a multiple of the device's storage
    /// offset alignment), as a buffer of their own that kernels bind; the block stays this
    /// buffer's.
    pub(crate) fn window(&self, start: u64, bytes: usize) -> WgpuBuffer {
        let at = self.window.unwrap_or(0) + start;
        WgpuBuffer { buffer: self.buffer.clone(), bytes, pool: self.pool.clone(), window: Some(at) }
    }

    /// How a kernel binds it: the whole block, or the window (rounded up to whole words).
    fn binding(&self) -> wgpu::BindingResource<'_> {
        match self.window {
            None => self.raw().as_entire_binding(),
            Some(offset) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: self.raw(),
                offset,
                size: std::num::NonZeroU64::new((self.bytes as u64).next_multiple_of(4).max(4)),
            }),
        }
    }

    /// Bytes a kernel binds.
    pub(crate) fn bound_bytes(&self) -> u64 {
        match self.window {
            None => self.raw().size(),
            Some(_) => (self.bytes as u64).next_multiple_of(4).max(4),
        }
    }
}

/// Which adapter [`Wgpu::with_options`] takes.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Accept a software adapter (lavapipe, WARP) when there is no hardware one.
    pub allow_software: bool,
    /// Take the first adapter whose name contains this (case-insensitive), hardware or not.
    pub name: Option<String>,
}

impl Options {
    /// Options from `STRATA_WGPU_ADAPTER`: `software` (or `cpu`, `lavapipe`) allows a software
    /// adapter; any other value picks an adapter by name.
    pub fn from_env() -> Options {
        match std::env::var("STRATA_WGPU_ADAPTER") {
            Ok(v) if matches!(v.to_ascii_lowercase().as_str(), "software" | "cpu" | "lavapipe" | "llvmpipe") => {
                Options { allow_software: true, name: None }
            }
            Ok(v) if !v.trim().is_empty() => Options { allow_software: true, name: Some(v) },
            _ => Options::default(),
        }
    }
}

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    passes: u32,
    timing: timing::Timing,
    params: Option<Params>,
}

/// The parameters of the dispatches recorded since the last submit, written into a mapped
/// staging buffer as they are recorded and copied to the device ahead of the dispatches when
/// they are submitted: two buffers a submit rather than one created, mapped and written a
/// dispatch.
struct Params {
    staging: wgpu::Buffer,
    device: wgpu::Buffer,
    used: u64,
}

impl Params {
    /// Bytes of parameters a submit holds before it is split.
    const SIZE: u64 = 64 << 10;

    fn new(device: &wgpu::Device, bytes: u64) -> Params {
        let buffer = |usage, mapped_at_creation| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: bytes,
                usage,
                mapped_at_creation,
            })
        };
        Params {
            staging: buffer(wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC, true),
            device: buffer(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, false),
            used: 0,
        }
    }
}

/// A compiled kernel and the layout of its bindings.
pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// The generated WGSL, without the prelude.
    source: String,
}

/// Dispatches recorded before the encoder is submitted: enough to keep the GPU busy while the
/// host records more, few enough that a long program does not hold every buffer alive.
pub(crate) const PASSES_PER_SUBMIT: u32 = 64;

/// Threads per workgroup in every kernel (a multiple of every subgroup size in use).
pub(crate) const WORKGROUP: u32 = 256;

/// One wgpu device with its queue, memory pool and compiled kernels. Clones share them.
#[derive(Clone)]
pub struct Wgpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pending: Arc<Mutex<Pending>>,
    kernels: Arc<Mutex<HashMap<String, Arc<Kernel>>>>,
    pool: Arc<Pool>,
    error: Arc<Mutex<Option<String>>>,
    /// Whether kernels keep wgpu's bounds checks (`STRATA_WGPU_CHECKED=1`).
    checked: bool,
    /// The most bytes a kernel binds of one buffer: the device's limit, or less with
    /// `STRATA_WGPU_MAX_BINDING` (so that the tests cover windowed dispatches on small data).
    pub(crate) binding_cap: u64,
    /// Whether the device writes timestamps in compute passes, and whether they are asked for.
    timestamps: bool,
    kernel_timing: Arc<std::sync::atomic::AtomicBool>,
    /// How f16 products run on cooperative matrices (`coop.rs`), where they do.
    coop: Option<coop::Config>,
    /// Whether kernels may use subgroup operations (`Features::SUBGROUP`, unless
    /// `STRATA_WGPU_SUBGROUPS=0`).
    subgroups: bool,
    /// The adapter's largest subgroup.
    subgroup_max: u32,
    /// Whether shaders may use `unpack2x16float` (`DownlevelFlags::SHADER_F16_IN_F32`).
    pub(crate) f16_in_f32: bool,
    /// Whether element-wise kernels take int64 and uint64 values (`Features::SHADER_INT64`:
    /// Vulkan, DX12 through DXC, Metal 2.3; unless `STRATA_WGPU_INT64=0`).
    pub(crate) int64: bool,
    /// Whether products of few rows take their own kernel (`few_rows.rs`; unless
    /// `STRATA_WGPU_FEW_ROWS=0`).
    pub(crate) few_rows: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Wgpu {
    /// The best hardware adapter, or the one `STRATA_WGPU_ADAPTER` names.
    pub fn new() -> Result<Wgpu> {
        Self::with_options(&Options::from_env())
    }

    /// The adapter `options` choose.
    pub fn with_options(options: &Options) -> Result<Wgpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let names: Vec<String> =
            adapters.iter().map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().device_type)).collect();
        let chosen = match &options.name {
            Some(want) => {
                let want = want.to_ascii_lowercase();
                adapters.into_iter().find(|a| a.get_info().name.to_ascii_lowercase().contains(&want))
            }
            None => adapters.into_iter().filter(|a| options.allow_software || rank(a) < 4).min_by_key(|a| rank(a)),
        };
        let Some(adapter) = chosen else {
            let seen = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
            return Err(err(
                "wgpu",
                format!(
                    "no usable GPU adapter (adapters seen: {seen}); on Linux a Vulkan driver and loader are needed \
                     (`apt-get install mesa-vulkan-drivers libvulkan1` gives the software one, chosen with \
                     STRATA_WGPU_ADAPTER=software)"
                ),
            ));
        };
        let info = adapter.get_info();
        let subgroup_max = if info.subgroup_max_size > 0 { info.subgroup_max_size } else { 128 };
        let f16_in_f32 = adapter.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        let limits = adapter.limits();
        let coop = coop::config(&adapter);
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP)
            && std::env::var("STRATA_WGPU_SUBGROUPS").map_or(true, |v| v != "0");
        let mut features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let int64 = adapter.features().contains(wgpu::Features::SHADER_INT64)
            && std::env::var("STRATA_WGPU_INT64").map_or(true, |v| v != "0");
        if int64 {
            features |= wgpu::Features::SHADER_INT64;
        }
        if coop.is_some() {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("strata"),
            required_features: features,
            required_limits: limits.clone(),
            // SAFETY: the experimental feature asked for is cooperative matrices, used by one
            // kernel (`coop.rs`) in the way wgpu's own tests use it, verified against the CPU
            // on NVIDIA's Vulkan driver, the only adapter `coop::config` takes by default (Apple's
            // Metal one only when asked, with `STRATA_WGPU_COOP=1`).
            experimental_features: if coop.is_some() {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| err("wgpu", format!("opening {}: {e}", info.name)))?;
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&slot).get_or_insert_with(|| e.to_string());
        }));
        let slot = error.clone();
        device.set_device_lost_callback(move |reason, message| {
            lock(&slot).get_or_insert_with(|| format!("device lost ({reason:?}): {message}"));
        });
        let cache = (limits.max_buffer_size / 4).min(4 << 30) as usize;
        let binding_cap = std::env::var("STRATA_WGPU_MAX_BINDING").ok().and_then(|v| v.parse::<u64>().ok()).map_or(
            limits.max_storage_buffer_binding_size,
            |c| {
                c.clamp(
                    4 * u64::from(limits.min_storage_buffer_offset_alignment),
                    limits.max_storage_buffer_binding_size,
                )
            },
        );
        let pool = Arc::new(Pool::new(device.clone(), format!("wgpu:{}", info.name), cache));
        Ok(Wgpu {
            device,
            queue,
            info,
            limits,
            pending: Arc::new(Mutex::new(Pending {
                encoder: None,
                passes: 0,
                timing: timing::Timing::default(),
                params: None,
            })),
            kernels: Arc::default(),
            pool,
            error,
            checked: std::env::var("STRATA_WGPU_CHECKED").is_ok_and(|v| v == "1"),
            binding_cap,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            coop,
            subgroups,
            subgroup_max,
            f16_in_f32,
            int64,
            few_rows: std::env::var("STRATA_WGPU_FEW_ROWS").map_or(true, |v| v != "0"),
            kernel_timing: Arc::new(std::sync::atomic::AtomicBool::new(timing::asked_by_env())),
        })
    }

    /// The adapter's name, type and API, as wgpu reports them.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Whether the adapter runs on the CPU (lavapipe, WARP): slower than the CPU backend, so
    /// never a default device.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The adapter and the API it runs through, for reports: `NVIDIA H200 through Vulkan`,
    /// `llvmpipe (LLVM 15.0.6, 256 bits) through Vulkan (a software adapter)`.
    pub fn describe(&self) -> String {
        let api = match self.info.backend {
            wgpu::Backend::Vulkan => "Vulkan",
            wgpu::Backend::Metal => "Metal",
            wgpu::Backend::Dx12 => "DX12",
            other => other.to_str(),
        };
        let software = if self.is_software() { " (a software adapter)" } else { "" };
        format!("{} through {api}{software}", self.info.name)
    }

    /// This device with kernels binding at most `bytes` of a buffer (at least four times the
    /// storage offset alignment): element-wise operations on larger operands then run in parts
    /// on windows of them, as they do past the device's own limit. Shares everything else.
    pub fn with_binding_cap(&self, bytes: u64) -> Wgpu {
        let floor = 4 * u64::from(self.limits.min_storage_buffer_offset_alignment);
        Wgpu { binding_cap: bytes.clamp(floor, self.limits.max_storage_buffer_binding_size), ..self.clone() }
    }

    /// This device with kernels that widen f16 by bit operations, as on adapters without
    /// `unpack2x16float` (`DownlevelFlags::SHADER_F16_IN_F32`), even where it has them: so that
    /// tests run those kernels too. Shares everything else.
    pub fn with_portable_f16(&self) -> Wgpu {
        Wgpu { f16_in_f32: false, ..self.clone() }
    }

    /// The element types this device's element-wise kernels (unary, binary, `where`, copies and
    /// casts) take: [`supported_dtypes`], and int64 and uint64 where the adapter has
    /// `SHADER_INT64`. (Other kernels take [`supported_dtypes`]; the array layer runs them on the
    /// CPU for 64-bit types.)
    pub fn elementwise_dtypes(&self) -> Vec<strata_core::DType> {
        let mut types = supported_dtypes();
        if self.int64 {
            types.extend([strata_core::DType::I64, strata_core::DType::U64]);
        }
        types
    }

    /// The most bytes a kernel binds of one buffer (see [`with_binding_cap`](Self::with_binding_cap)).
    pub fn binding_cap(&self) -> u64 {
        self.binding_cap
    }

    /// The device's limits (the adapter's, all asked for).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The device, for other wgpu work sharing Strata's buffers.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue Strata submits to (call [`Backend::synchronize`] before submitting work that
    /// reads Strata's buffers, so that Strata's recorded work is submitted first).
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// A device-to-device copy of `src` into `dst` (as many bytes as both hold, rounded down to
    /// a multiple of 4): the bandwidth yardstick the element-wise kernels are measured against.
    pub fn memcpy(&self, src: &WgpuBuffer, dst: &WgpuBuffer) -> Result<()> {
        let n = (src.bytes.min(dst.bytes) / 4 * 4) as u64;
        self.record(|enc, _| enc.copy_buffer_to_buffer(src.raw(), 0, dst.raw(), 0, n));
        self.check("memcpy")
    }

    /// The most inputs one kernel binds on this adapter (its storage-buffer limit, less the
    /// parameters and the output).
    pub fn max_inputs(&self) -> usize {
        (self.limits.max_storage_buffers_per_shader_stage as usize).saturating_sub(2)
    }

    /// Bytes held by the pool for reuse, and bytes in live buffers.
    pub fn memory(&self) -> (usize, usize) {
        self.pool.usage()
    }

    /// The first error wgpu reported since the last call, as an `Err` for `op`.
    fn check(&self, op: &'static str) -> Result<()> {
        match lock(&self.error).take() {
            Some(e) => Err(err(op, format!("wgpu reported: {e}"))),
            None => Ok(()),
        }
    }

    /// Every kernel compiled so far as `(key, WGSL)`, the prelude included: what the tests
    /// validate and translate to MSL, HLSL and SPIR-V with naga.
    pub fn kernel_sources(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            lock(&self.kernels).iter().map(|(k, v)| (k.clone(), module_code(&v.source))).collect();
        v.sort();
        v
    }

    /// Records kernel times on the GPU clock into the flight recorder (off by default, or on
    /// with `STRATA_TRACE_GPU=on`), where the adapter has timestamp queries.
    pub fn set_kernel_timing(&self, on: bool) {
        self.kernel_timing.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether f16 `matmul2d` runs on the adapter's cooperative matrices.
    pub fn has_coop(&self) -> bool {
        self.coop.is_some()
    }

    /// Whether kernels use the adapter's subgroup operations (scans do).
    pub fn has_subgroups(&self) -> bool {
        self.subgroups
    }

    /// The largest subgroup the adapter runs (128, the most any may, where it does not say).
    pub(crate) fn subgroup_max_size(&self) -> u32 {
        self.subgroup_max
    }

    pub(crate) fn coop_config(&self) -> Option<coop::Config> {
        self.coop
    }

    /// Whether this adapter can time kernels ([`set_kernel_timing`](Self::set_kernel_timing)).
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// Records `f` into the pending command encoder, submitting it every few passes.
    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder, &mut timing::Timing)) {
        self.record_locked(&mut lock(&self.pending), f);
    }

    fn record_locked(&self, p: &mut Pending, f: impl FnOnce(&mut wgpu::CommandEncoder, &mut timing::Timing)) {
        let enc = p.encoder.get_or_insert_with(|| {
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("strata") })
        });
        f(enc, &mut p.timing);
        p.passes += 1;
        if p.passes >= PASSES_PER_SUBMIT {
            self.submit_locked(p);
        }
    }

    /// Submits the pending encoder, after the copy of its dispatches' parameters.
    fn submit_locked(&self, p: &mut Pending) {
        p.passes = 0;
        let params = p.params.take().map(|a| {
            a.staging.unmap();
            let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("params") });
            enc.copy_buffer_to_buffer(&a.staging, 0, &a.device, 0, a.used);
            enc.finish()
        });
        let main = p.encoder.take().map(|mut enc| {
            p.timing.close(&mut enc);
            enc.finish()
        });
        if params.is_some() || main.is_some() {
            self.queue.submit(params.into_iter().chain(main));
        }
    }

    /// Submits everything recorded so far.
    fn submit(&self) {
        self.submit_locked(&mut lock(&self.pending));
    }

    /// After a wait: the kernel times of everything submitted, to the flight recorder.
    fn collect_times(&self) {
        lock(&self.pending).timing.collect(&self.device, self.queue.get_timestamp_period());
    }

    /// The kernel `key`, compiled from the prelude and `source()` on first use. A shader the
    /// device rejects is an `Err` with the compiler's message.
    pub(crate) fn kernel(
        &self,
        key: &str,
        reads: usize,
        writes: usize,
        source: impl FnOnce() -> String,
    ) -> Result<Arc<Kernel>> {
        if let Some(k) = lock(&self.kernels).get(key) {
            return Ok(k.clone());
        }
        let source = source();
        let code = module_code(&source);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor { label: Some(key), source: wgpu::ShaderSource::Wgsl(code.into()) };
        let module = if self.checked {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: every operand is checked to lie inside its buffer before a dispatch
            // (`TensorRef::check` and the validators), buffers are whole multiples of 16
            // bytes, and the generated kernels index only inside their operands' layouts, so
            // the bounds checks wgpu would inject never fire; every loop is bounded by its
            // parameters. `STRATA_WGPU_CHECKED=1` puts the checks back.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..1 + reads + writes)
            .map(|i| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: i <= reads },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(key), entries: &entries });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(key),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(err("wgpu", format!("compiling kernel {key}: {e}")));
        }
        let k = Arc::new(Kernel { pipeline, layout, source });
        lock(&self.kernels).insert(key.to_owned(), k.clone());
        Ok(k)
    }

    /// Records one dispatch of `kernel` over `groups` workgroups (split over two dimensions
    /// past the per-dimension limit; kernels rebuild the linear index from `num_workgroups`).
    /// Binding 0 is `params`, then `reads`, then `writes`.
    pub(crate) fn dispatch(
        &self,
        name: &'static str,
        kernel: &Kernel,
        params: &[u32],
        reads: &[&WgpuBuffer],
        writes: &[&WgpuBuffer],
        groups: u64,
    ) -> Result<()> {
        if groups == 0 {
            return Ok(());
        }
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension);
        let (x, y) = (groups.min(max), groups.div_ceil(max));
        if y > max {
            return Err(err(name, format!("{groups} workgroups are more than this device dispatches at once")));
        }
        let binding_max = self.binding_cap;
        for b in reads.iter().chain(writes) {
            if b.bound_bytes() > binding_max {
                return Err(err(
                    name,
                    format!(
                        "a {}-byte operand is larger than this device binds at once ({binding_max} bytes)",
                        b.bytes
                    ),
                ));
            }
        }
        let start = strata_trace::now_ns();
        let params = bytes_of(if params.is_empty() { &[0u32][..] } else { params });
        let len = params.len() as u64;
        let align = u64::from(self.limits.min_storage_buffer_offset_alignment);
        let mut guard = lock(&self.pending);
        let p = &mut *guard;
        if p.params.as_ref().is_some_and(|a| a.used + len > a.device.size()) {
            self.submit_locked(p);
        }
        let arena =
            p.params.get_or_insert_with(|| Params::new(&self.device, Params::SIZE.max(len.next_multiple_of(align))));
        let offset = arena.used;
        arena
            .staging
            .slice(offset..offset + len)
            .get_mapped_range_mut()
            .map_err(|e| err(name, format!("writing the parameters: {e}")))?
            .copy_from_slice(params);
        arena.used = (offset + len).next_multiple_of(align);
        let binding = wgpu::BufferBinding { buffer: &arena.device, offset, size: std::num::NonZeroU64::new(len) };
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(binding) }];
        for (i, b) in reads.iter().chain(writes).enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.binding() });
        }
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &kernel.layout,
            entries: &entries,
        });
        let timed =
            self.timestamps && strata_trace::enabled() && self.kernel_timing.load(std::sync::atomic::Ordering::Relaxed);
        self.record_locked(p, |enc, timing| {
            let timestamp_writes = if timed { timing.writes(&self.device, name) } else { None };
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(name), timestamp_writes });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(x as u32, y as u32, 1);
        });
        drop(guard);
        strata_trace::complete_span(name, start, strata_trace::now_ns());
        self.check(name)
    }

    /// A buffer from the pool (contents unspecified).
    fn take(&self, bytes: usize) -> Result<WgpuBuffer> {
        if bytes as u64 > self.limits.max_buffer_size {
            return Err(Error::OutOfMemory { device: self.name(), bytes });
        }
        let buffer = self.pool.take(bytes)?;
        Ok(WgpuBuffer { buffer: Some(buffer), bytes, pool: self.pool.clone(), window: None })
    }
}

/// The whole module of a generated kernel: its `enable` directives (which must open a module),
/// the prelude, then the rest.
pub(crate) fn module_code(source: &str) -> String {
    let (enables, body): (Vec<&str>, Vec<&str>) = source.lines().partition(|l| l.starts_with("enable "));
    format!("{}\n{PRELUDE}\n{}", enables.join("\n"), body.join("\n"))
}

/// The element types the wgpu kernels handle: every type up to 32 bits.
pub fn supported_dtypes() -> Vec<strata_core::DType> {
    strata_core::DType::ALL.iter().copied().filter(|&t| wgsl::supported(t)).collect()
}

/// Bytes of a `u32` slice.
pub(crate) fn bytes_of(v: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding and any alignment suffices for u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

impl Backend for Wgpu {
    type Buffer = WgpuBuffer;
    type Quantized = WgpuQuantized;

    fn name(&self) -> String {
        format!("wgpu:{} ({:?})", self.info.name, self.info.backend)
    }

    fn alloc(&self, bytes: usize) -> Result<WgpuBuffer> {
        let b = self.take(bytes)?;
        self.record(|enc, _| enc.clear_buffer(b.raw(), 0, None));
        self.check("alloc")?;
        Ok(b)
    }

    fn alloc_output(&self, bytes: usize) -> Result<WgpuBuffer> {
        self.take(bytes)
    }

    fn upload(&self, bytes: &[u8]) -> Result<WgpuBuffer> {
        let b = self.take(bytes.len())?;
        if bytes.is_empty() {
            return Ok(b);
        }
        // A staging copy recorded in the encoder keeps its place among the kernels (a
        // `write_buffer` would land before every kernel of the next submission).
        let padded = bytes.len().next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("upload"),
            size: padded as u64,
            usage: wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        {
            let mut view = staging
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| err("upload", format!("mapping the staging buffer: {e}")))?;
            if padded == bytes.len() {
                view.copy_from_slice(bytes);
            } else {
                let mut whole = bytes.to_vec();
                whole.resize(padded, 0);
                view.copy_from_slice(&whole);
            }
        }
        staging.unmap();
        self.record(|enc, _| enc.copy_buffer_to_buffer(&staging, 0, b.raw(), 0, padded as u64));
        self.check("upload")?;
        Ok(b)
    }

    fn download(&self, buffer: &WgpuBuffer, out: &mut [u8]) -> Result<()> {
        if out.len() > buffer.bytes {
            return Err(err("download", format!("asked for {} bytes of a {}-byte buffer", out.len(), buffer.bytes)));
        }
        if out.is_empty() {
            return self.synchronize();
        }
        let padded = out.len().next_multiple_of(4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size: padded,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        self.record(|enc, _| enc.copy_buffer_to_buffer(buffer.raw(), 0, &staging, 0, padded));
        self.submit();
        let start = strata_trace::now_ns();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| err("download", format!("waiting for the GPU: {e}")))?;
        self.check("download")?;
        rx.recv()
            .map_err(|_| err("download", "the read-back was dropped"))?
            .map_err(|e| err("download", format!("mapping the read-back buffer: {e}")))?;
        out.copy_from_slice(
            &staging.slice(..).get_mapped_range().map_err(|e| err("download", format!("reading back: {e}")))?
                [..out.len()],
        );
        staging.unmap();
        strata_trace::complete_span("wgpu wait", start, strata_trace::now_ns());
        self.collect_times();
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        self.submit();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| err("synchronize", format!("waiting for the GPU: {e}")))?;
        self.collect_times();
        self.check("synchronize")
    }

    fn upload_quantized(&self, weight: &QuantizedTensor) -> Result<WgpuQuantized> {
        qmatmul::upload(self, weight)
    }

    fn matmul2d(
        &self,
        desc: &Matmul2d,
        left: TensorRef<'_, WgpuBuffer>,
        right: TensorRef<'_, WgpuBuffer>,
        bias: Option<TensorRef<'_, WgpuBuffer>>,
        scales: Option<Scales<'_, WgpuBuffer>>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        matmul::matmul2d(self, desc, left, right, bias, scales, out)
    }

    fn conv(
        &self,
        desc: &Conv,
        input: TensorRef<'_, WgpuBuffer>,
        weight: TensorRef<'_, WgpuBuffer>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        conv::conv(self, desc, input, weight, out)
    }

    fn attention(
        &self,
        desc: &Attention,
        q: TensorRef<'_, WgpuBuffer>,
        k: TensorRef<'_, WgpuBuffer>,
        v: TensorRef<'_, WgpuBuffer>,
        mask: Option<TensorRef<'_, WgpuBuffer>>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        attention::attention(self, desc, q, k, v, mask, out)
    }

    fn quantized_matmul(
        &self,
        desc: &QuantizedMatmul,
        x: TensorRef<'_, WgpuBuffer>,
        weight: &WgpuQuantized,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        qmatmul::quantized_matmul(self, desc, x, weight, out)
    }

    fn unary(&self, op: UnaryOp, x: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
        elementwise::unary(self, op, x, out)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: TensorRef<'_, WgpuBuffer>,
        b: TensorRef<'_, WgpuBuffer>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        elementwise::binary(self, op, a, b, out)
    }

    fn select(
        &self,
        cond: TensorRef<'_, WgpuBuffer>,
        a: TensorRef<'_, WgpuBuffer>,
        b: TensorRef<'_, WgpuBuffer>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        elementwise::select(self, cond, a, b, out)
    }

    fn reduce(
        &self,
        op: ReduceOp,
        axes: &[usize],
        x: TensorRef<'_, WgpuBuffer>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        reduce::reduce(self, op, axes, x, out)
    }

    fn scan(
        &self,
        op: ScanOp,
        axis: usize,
        reverse: bool,
        inclusive: bool,
        x: TensorRef<'_, WgpuBuffer>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        reduce::scan(self, op, axis, reverse, inclusive, x, out)
    }

    fn fused(
        &self,
        program: &Fused,
        inputs: &[TensorRef<'_, WgpuBuffer>],
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        index::fused(self, program, inputs, out)
    }

    fn gather(
        &self,
        axis: usize,
        x: TensorRef<'_, WgpuBuffer>,
        indices: TensorRef<'_, WgpuBuffer>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        index::gather(self, axis, x, indices, out)
    }

    fn scatter_add(
        &self,
        axis: usize,
        indices: TensorRef<'_, WgpuBuffer>,
        updates: TensorRef<'_, WgpuBuffer>,
        out: TensorMut<'_, WgpuBuffer>,
    ) -> Result<()> {
        index::scatter_add(self, axis, indices, updates, out)
    }

    fn random_bits(&self, keys: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
        index::random_bits(self, keys, out)
    }

    fn argsort(&self, axis: usize, x: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
        sort::argsort(self, axis, x, out)
    }

    fn copy(&self, x: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
        elementwise::copy(self, x, out)
    }

    fn cast(&self, x: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
        elementwise::cast(self, x, out)
    }
}
