//! Strata's CUDA backend.
//!
//! `cudarc` with dynamic loading, so the crate builds and its CPU-side tests run where there is
//! no CUDA; [`Cuda::new`] returns an `Err` (never panics) when the driver or a device is
//! missing. Kernels are CUDA C++ (`kernels/*.cu`, over the header library `kernels/strata.cuh`)
//! compiled by NVRTC for the device's architecture (`sm_90a` on Hopper) and cached on disk
//! ([`compile`]). Memory comes from plain device allocations through a caching pool; an
//! out-of-memory empties the pool and retries once, then is an `Err`.
//!
//! Kernels: copies and casts between layouts, every element-wise operation (unary, binary,
//! select), reductions and scans, `take_along_axis`/`scatter_add`, argsort and Threefry random
//! bits, `matmul2d` (tensor cores for f16/bf16/fp8/tf32: `wgmma` on sm_90a, `mma.sync` from
//! sm_80; CUDA cores for the rest), attention, convolution, quantized products and fused
//! element-wise programs, for the standard types. Host copies go through page-locked staging
//! (`transfer`); products can be tuned per shape ([`Cuda::with_tuning`]).
//!
//! ```no_run
//! use strata_core::kernel::{Backend, Layout, TensorMut, TensorRef, UnaryOp};
//! use strata_core::DType;
//! let gpu = strata_cuda::Cuda::new(0)?;
//! let x = gpu.upload(bytemuck_f32(&[0.0, 1.0, 2.0]))?;
//! let mut y = gpu.alloc_output(12)?;
//! let l = Layout::contiguous(&[3]);
//! gpu.unary(UnaryOp::Exp, TensorRef::new(DType::F32, &x, &l), TensorMut::new(DType::F32, &mut y, &l))?;
//! # fn bytemuck_f32(v: &[f32]) -> &[u8] { unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len() * 4) } }
//! # Ok::<(), strata_core::Error>(())
//! ```

mod attention;
pub mod compile;
mod conv;
mod exprs;
mod fused;
mod index;
mod matmul;
mod pool;
mod qmatmul;
mod reduce;
mod timing;
mod transfer;
mod tune;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};
use strata_core::kernel::{
    Attention, Backend, BinaryOp, Conv, Fused, Layout, Matmul2d, QuantizedMatmul, ReduceOp, Scales, ScanOp, Storage,
    TensorMut, TensorRef, UnaryOp, validate_binary, validate_elementwise, validate_select, validate_unary,
};
use strata_core::quant::QuantizedTensor;
use strata_core::{DType, Error, Result};

use pool::Pool;
pub use qmatmul::CudaQuantized;

/// Whether a CUDA driver can be loaded on this machine (a device may still be absent).
pub fn driver_available() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

fn driver_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::InvalidArgument { op: "cuda", message: format!("{what}: {e:?}") }
}

/// Device memory: a block from the pool, returned to it when dropped.
pub struct CudaBuffer {
    slice: Option<CudaSlice<u8>>,
    bytes: usize,
    pool: Arc<Pool>,
}

impl Storage for CudaBuffer {
    fn byte_len(&self) -> usize {
        self.bytes
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        if let Some(s) = self.slice.take() {
            self.pool.give_back(s);
        }
    }
}

impl CudaBuffer {
    /// The device memory, for handing to another CUDA library (cuBLAS, say) on
    /// [`Cuda::stream`]. Its first [`Storage::byte_len`] bytes are the buffer's.
    pub fn device_slice(&self) -> &CudaSlice<u8> {
        self.slice()
    }
    /// The device memory, writable (see [`device_slice`](Self::device_slice)).
    pub fn device_slice_mut(&mut self) -> &mut CudaSlice<u8> {
        self.slice_mut()
    }
    fn slice(&self) -> &CudaSlice<u8> {
        self.slice.as_ref().expect("a live buffer has its block")
    }
    fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        self.slice.as_mut().expect("a live buffer has its block")
    }
}

/// One CUDA device with its stream, memory pool and compiled kernels. Clones share them.
#[derive(Clone)]
pub struct Cuda {
    ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pool: Arc<Pool>,
    arch: String,
    ordinal: usize,
    pub(crate) sms: u32,
    kernels: Arc<Mutex<HashMap<String, CudaFunction>>>,
    timing: Arc<Mutex<timing::Timing>>,
    kernel_timing: Arc<std::sync::atomic::AtomicBool>,
    /// Whether attention and convolution take their tensor-core kernels where they apply.
    tensor_cores: bool,
    /// Page-locked slots that host copies go through.
    staging: Arc<Mutex<transfer::Staging>>,
    /// Whether products take tuned plans (timing those not yet chosen).
    tuning: bool,
    tuner: Arc<tune::Tuner>,
}

/// The most dimensions a kernel's geometry takes.
pub(crate) const MAX_DIMS: usize = 8;

/// The strided geometry every element-wise kernel takes (mirrors `strata::Geometry` in
/// `kernels/strata.cuh`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    n: i64,
    ndim: i32,
    contiguous: i32,
    shape: [i64; MAX_DIMS],
    stride: [[i64; MAX_DIMS]; 4],
    offset: [i64; 4],
}

// SAFETY: plain old data with the C layout of `strata::Geometry`.
unsafe impl DeviceRepr for Geometry {}

pub(crate) fn geometry(op: &'static str, out: &Layout, inputs: &[&Layout]) -> Result<Geometry> {
    let nd = out.shape().len();
    if nd > 8 {
        return Err(Error::InvalidArgument {
            op,
            message: format!("{nd} dimensions: the CUDA kernels take at most 8"),
        });
    }
    let mut g = Geometry {
        n: out.numel() as i64,
        ndim: nd as i32,
        contiguous: 0,
        shape: [1; 8],
        stride: [[0; 8]; 4],
        offset: [0; 4],
    };
    let layouts: Vec<&Layout> = std::iter::once(out).chain(inputs.iter().copied()).collect();
    let dense = layouts.iter().all(|l| l.is_contiguous());
    // Whole packs of four elements start at every operand's offset: the packed path applies.
    let packed = dense && layouts.iter().all(|l| l.offset().is_multiple_of(4));
    g.contiguous = if packed { 2 } else { i32::from(dense) };
    for (d, &s) in out.shape().iter().enumerate() {
        g.shape[d] = s as i64;
    }
    for (w, l) in layouts.iter().enumerate() {
        g.offset[w] = l.offset() as i64;
        for (d, &s) in l.strides().iter().enumerate() {
            g.stride[w][d] = s as i64;
        }
    }
    Ok(g)
}

/// A type the CUDA kernels do not take yet (the narrow MX formats, sub-byte integers,
/// complex64): `NotImplemented`, so that the array layer can run such an op on the CPU.
fn unsupported_type(op: &'static str, t: DType) -> Error {
    Error::NotImplemented { op, backend: format!("cuda for {t}") }
}

impl Cuda {
    /// Opens device `ordinal`. An `Err` when there is no driver or no such device.
    pub fn new(ordinal: usize) -> Result<Cuda> {
        if !driver_available() {
            return Err(Error::InvalidArgument {
                op: "cuda",
                message: "no CUDA driver (libcuda) on this machine".into(),
            });
        }
        let count = CudaContext::device_count().map_err(|e| driver_err("counting devices", e))?;
        if ordinal as i32 >= count {
            return Err(Error::InvalidArgument {
                op: "cuda",
                message: format!("device {ordinal} asked for, {count} present"),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_err("creating a context", e))?;
        // One stream per device: its order is the only synchronisation kernels need, so the
        // per-buffer events cudarc records for multi-stream use are pure overhead here.
        // SAFETY: no other stream touches this context's buffers.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability().map_err(|e| driver_err("reading the architecture", e))?;
        let arch = if major == 9 && minor == 0 { "sm_90a".to_owned() } else { format!("sm_{major}{minor}") };
        let sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver_err("reading the SM count", e))? as u32;
        let stream = ctx.default_stream();
        let total = ctx.total_mem().unwrap_or(1 << 30);
        let pool = Arc::new(Pool::new(stream.clone(), format!("cuda:{ordinal}"), total / 4));
        let kernel_timing = Arc::new(std::sync::atomic::AtomicBool::new(timing::asked_by_env()));
        let tensor_cores = std::env::var_os("STRATA_CUDA_TENSOR_CORES").is_none_or(|v| v != "0");
        Ok(Cuda {
            ctx: ctx.clone(),
            stream,
            pool,
            arch,
            ordinal,
            sms,
            kernels: Arc::default(),
            timing: Arc::default(),
            kernel_timing,
            tensor_cores,
            staging: Arc::new(Mutex::new(transfer::Staging::new(ctx.clone(), transfer::CHUNK, transfer::SLOTS))),
            tuning: tune::asked_by_env(),
            tuner: Arc::new(tune::Tuner::new(compile::cache_dir().join("tuning.txt"))),
        })
    }

    /// The stream every kernel of this device is queued on (work from other CUDA libraries on
    /// it is ordered with Strata's).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The driver context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Records every kernel's time on the GPU into the flight recorder (off by default, or
    /// on with `STRATA_TRACE_GPU=on`): two events per launch, read back at the next wait.
    pub fn set_kernel_timing(&self, on: bool) {
        self.kernel_timing.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// This device with attention and convolution on their tensor-core kernels where those
    /// apply (`on`, the default; `STRATA_CUDA_TENSOR_CORES=0` turns them off for a whole program)
    /// or always on their general kernels, the references the fast ones are checked and timed
    /// against. Shares everything else (streams, memory, compiled kernels).
    pub fn with_tensor_cores(&self, on: bool) -> Cuda {
        Cuda { tensor_cores: on, ..self.clone() }
    }

    /// This device with its own ring of `slots` page-locked staging slots of `chunk` bytes
    /// for host copies (the default is four of 32 MiB; copies under 64 KiB bypass it). More or
    /// larger slots let a bigger upload return before its copy ends; small ones exercise the
    /// ring in tests. The ring is this clone's own (its slots are page-locked on its first large
    /// copy, in addition to the device's default ring). Shares everything else.
    pub fn with_staging(&self, chunk: usize, slots: usize) -> Cuda {
        let staging = transfer::Staging::new(self.ctx.clone(), chunk, slots);
        Cuda { staging: Arc::new(Mutex::new(staging)), ..self.clone() }
    }

    /// This device with its products on tuned plans (`on`; `STRATA_GEMM_TUNE=1` turns it on for
    /// a whole program) or on the kernels' own rules (the default). A tuned product whose shape
    /// has not been seen on this device times each candidate plan of the warp-specialized
    /// kernel (schedule, CTA pairs, split of k) on a scratch output first, once, and keeps the
    /// fastest in `tuning.txt` beside the compiled kernels. Shares everything else.
    ///
    /// ```no_run
    /// use strata_cuda::Cuda;
    /// let gpu = Cuda::new(0)?.with_tuning(true);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_tuning(&self, on: bool) -> Cuda {
        Cuda { tuning: on, ..self.clone() }
    }

    /// This device with its products tuned (as [`with_tuning`](Self::with_tuning)), the plans
    /// read from and kept in `path` instead of `tuning.txt` beside the compiled kernels: for
    /// tests and benchmarks that must tune afresh, and for a program that ships its own plans.
    /// Shares everything else.
    ///
    /// ```no_run
    /// use strata_cuda::Cuda;
    /// let gpu = Cuda::new(0)?.with_tuning_file("plans/h200.txt");
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_tuning_file(&self, path: impl Into<std::path::PathBuf>) -> Cuda {
        Cuda { tuning: true, tuner: Arc::new(tune::Tuner::new(path.into())), ..self.clone() }
    }

    pub(crate) fn tuning(&self) -> bool {
        self.tuning
    }

    fn staging(&self) -> std::sync::MutexGuard<'_, transfer::Staging> {
        self.staging.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn tensor_cores(&self) -> bool {
        self.tensor_cores
    }

    /// The architecture kernels are compiled for (`sm_90a` on Hopper).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "unknown CUDA device".into())
    }

    /// The driver's device-to-device copy of `src` into `dst` (the bandwidth yardstick the
    /// element-wise kernels are measured against).
    pub fn memcpy(&self, src: &CudaBuffer, dst: &mut CudaBuffer) -> Result<()> {
        let n = src.bytes.min(dst.bytes);
        let from = src.slice().slice(0..n);
        let mut to = dst.slice_mut().slice_mut(0..n);
        self.stream.memcpy_dtod(&from, &mut to).map_err(|e| driver_err("copying on the device", e))
    }

    /// Bytes held by the pool for reuse, and bytes in use by live buffers.
    pub fn memory(&self) -> (usize, usize) {
        self.pool.usage()
    }

    /// The kernel `key`, compiled from `source()` on first use.
    pub(crate) fn kernel(&self, key: &str, source: impl FnOnce() -> String) -> Result<CudaFunction> {
        self.kernel_with_smem(key, 0, source)
    }

    /// [`kernel`](Self::kernel) for a kernel that takes `dynamic_smem` bytes of dynamic
    /// shared memory: the limit is raised once, when the kernel is loaded.
    pub(crate) fn kernel_with_smem(
        &self,
        key: &str,
        dynamic_smem: u32,
        source: impl FnOnce() -> String,
    ) -> Result<CudaFunction> {
        if let Some(f) = self.kernels.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(f.clone());
        }
        // Each kernel's symbol is its key's, so that profilers and compute-sanitizer name it.
        let (name, source) = compile::named(key, &source());
        let cubin = compile::compile(&source, &self.arch)?;
        let module = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
            .map_err(|e| driver_err("loading a kernel module", e))?;
        let f = module.load_function(&name).map_err(|e| driver_err("finding a kernel", e))?;
        if dynamic_smem > 0 {
            f.set_attribute(
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                dynamic_smem as i32,
            )
            .map_err(|e| driver_err("raising a kernel's shared-memory limit", e))?;
        }
        self.kernels.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), f.clone());
        Ok(f)
    }

    /// A one-dimensional launch of 256-thread blocks for `items` items, `per_block` to a block,
    /// with at most `per_sm` blocks per multiprocessor (grid-stride loops take the rest).
    pub(crate) fn linear(&self, items: u64, per_block: u64, per_sm: u64) -> LaunchConfig {
        let blocks = items.div_ceil(per_block).min(u64::from(self.sms) * per_sm).max(1) as u32;
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
    }

    pub(crate) fn config(&self, g: &Geometry) -> LaunchConfig {
        // The packed path gives each thread four elements per step.
        let work = if g.contiguous == 2 { g.n / 4 + g.n % 4 } else { g.n };
        self.linear(work.max(1) as u64, 256, 32)
    }

    fn launch(
        &self,
        name: &'static str,
        f: &CudaFunction,
        g: &Geometry,
        ins: &[&CudaBuffer],
        out: &mut CudaBuffer,
    ) -> Result<()> {
        if g.n == 0 {
            return Ok(());
        }
        let cfg = self.config(g);
        let mut b = self.stream.launch_builder(f);
        for i in ins {
            b.arg(i.slice());
        }
        b.arg(out.slice_mut());
        b.arg(g);
        // SAFETY: the kernel's parameters are (inputs..., output, Geometry) as generated, and
        // every operand was checked to lie inside its buffer.
        self.timed(name, || unsafe { b.launch(cfg) })
    }

    /// Runs `launch`, recording the time it took to queue as a span named `name` and, when
    /// the recorder is on, the kernel's time on the GPU (`timing`).
    pub(crate) fn timed<T>(
        &self,
        name: &'static str,
        launch: impl FnOnce() -> std::result::Result<T, cudarc::driver::DriverError>,
    ) -> Result<()> {
        let start = strata_trace::now_ns();
        if strata_trace::enabled() && self.kernel_timing.load(std::sync::atomic::Ordering::Relaxed) {
            let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
            t.before(&self.ctx, &self.stream).map_err(|e| driver_err("recording an event", e))?;
            launch().map_err(|e| driver_err(name, e))?;
            t.after(name, &self.ctx, &self.stream).map_err(|e| driver_err("recording an event", e))?;
        } else {
            launch().map_err(|e| driver_err(name, e))?;
        }
        strata_trace::complete_span(name, start, strata_trace::now_ns());
        Ok(())
    }

    pub(crate) fn types(op: &'static str, dtypes: &[DType]) -> Result<()> {
        match dtypes.iter().find(|t| exprs::c_type(**t).is_none()) {
            Some(&t) => Err(unsupported_type(op, t)),
            None => Ok(()),
        }
    }
}

impl Backend for Cuda {
    type Buffer = CudaBuffer;
    type Quantized = CudaQuantized;

    fn name(&self) -> String {
        format!("cuda:{} ({})", self.ordinal, self.device_name())
    }

    fn alloc(&self, bytes: usize) -> Result<CudaBuffer> {
        let mut b = self.alloc_output(bytes)?;
        self.stream.memset_zeros(b.slice_mut()).map_err(|e| driver_err("clearing a buffer", e))?;
        Ok(b)
    }

    fn alloc_output(&self, bytes: usize) -> Result<CudaBuffer> {
        let slice = self.pool.take(bytes)?;
        Ok(CudaBuffer { slice: Some(slice), bytes, pool: self.pool.clone() })
    }

    fn upload(&self, bytes: &[u8]) -> Result<CudaBuffer> {
        let mut b = self.alloc_output(bytes.len())?;
        if !bytes.is_empty() {
            self.staging().upload(&self.stream, bytes, &mut b)?;
        }
        Ok(b)
    }

    fn download(&self, buffer: &CudaBuffer, out: &mut [u8]) -> Result<()> {
        if out.len() > buffer.bytes {
            return Err(Error::InvalidArgument {
                op: "download",
                message: format!("asked for {} bytes of a {}-byte buffer", out.len(), buffer.bytes),
            });
        }
        if !out.is_empty() {
            self.staging().download(&self.stream, buffer, out)?;
        }
        self.synchronize()
    }

    fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| driver_err("synchronizing", e))?;
        // The stream is idle: the kernel times queued so far can be read.
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        t.resolve(&self.ctx, &self.stream).map_err(|e| driver_err("reading kernel times", e))
    }

    fn upload_quantized(&self, weight: &QuantizedTensor) -> Result<CudaQuantized> {
        qmatmul::upload(self, weight)
    }

    fn matmul2d(
        &self,
        desc: &Matmul2d,
        left: TensorRef<'_, CudaBuffer>,
        right: TensorRef<'_, CudaBuffer>,
        bias: Option<TensorRef<'_, CudaBuffer>>,
        scales: Option<Scales<'_, CudaBuffer>>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        matmul::matmul2d(self, desc, left, right, bias, scales, out)
    }
    fn conv(
        &self,
        desc: &Conv,
        input: TensorRef<'_, CudaBuffer>,
        weight: TensorRef<'_, CudaBuffer>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        conv::conv(self, desc, input, weight, out)
    }
    fn attention(
        &self,
        desc: &Attention,
        q: TensorRef<'_, CudaBuffer>,
        k: TensorRef<'_, CudaBuffer>,
        v: TensorRef<'_, CudaBuffer>,
        mask: Option<TensorRef<'_, CudaBuffer>>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        attention::attention(self, desc, q, k, v, mask, out)
    }
    fn quantized_matmul(
        &self,
        desc: &QuantizedMatmul,
        x: TensorRef<'_, CudaBuffer>,
        weight: &CudaQuantized,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        qmatmul::quantized_matmul(self, desc, x, weight, out)
    }

    fn unary(&self, op: UnaryOp, x: TensorRef<'_, CudaBuffer>, out: TensorMut<'_, CudaBuffer>) -> Result<()> {
        let want = validate_unary(op, &x, &out)?;
        Self::types(op.name(), &[x.dtype])?;
        let key = format!("unary {} {}", op.name(), x.dtype);
        let f = self.kernel(&key, || unary_source(op, x.dtype, want))?;
        let g = geometry(op.name(), out.layout, &[x.layout])?;
        self.launch(op.name(), &f, &g, &[x.buffer], out.buffer)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: TensorRef<'_, CudaBuffer>,
        b: TensorRef<'_, CudaBuffer>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        let want = validate_binary(op, &a, &b, &out)?;
        Self::types(op.name(), &[a.dtype])?;
        let key = format!("binary {} {}", op.name(), a.dtype);
        let f = self.kernel(&key, || binary_source(op, a.dtype, want))?;
        let g = geometry(op.name(), out.layout, &[a.layout, b.layout])?;
        self.launch(op.name(), &f, &g, &[a.buffer, b.buffer], out.buffer)
    }

    fn select(
        &self,
        cond: TensorRef<'_, CudaBuffer>,
        a: TensorRef<'_, CudaBuffer>,
        b: TensorRef<'_, CudaBuffer>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        const OP: &str = "where";
        validate_select(&cond, &a, &b, &out)?;
        Self::types(OP, &[a.dtype])?;
        let f = self.kernel(&format!("select {}", a.dtype), || select_source(a.dtype))?;
        let g = geometry(OP, out.layout, &[cond.layout, a.layout, b.layout])?;
        self.launch(OP, &f, &g, &[cond.buffer, a.buffer, b.buffer], out.buffer)
    }

    fn reduce(
        &self,
        op: ReduceOp,
        axes: &[usize],
        x: TensorRef<'_, CudaBuffer>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        reduce::reduce(self, op, axes, x, out)
    }
    fn scan(
        &self,
        op: ScanOp,
        axis: usize,
        reverse: bool,
        inclusive: bool,
        x: TensorRef<'_, CudaBuffer>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        reduce::scan(self, op, axis, reverse, inclusive, x, out)
    }
    fn fused(
        &self,
        program: &Fused,
        inputs: &[TensorRef<'_, CudaBuffer>],
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        fused::fused(self, program, inputs, out)
    }
    fn gather(
        &self,
        axis: usize,
        x: TensorRef<'_, CudaBuffer>,
        indices: TensorRef<'_, CudaBuffer>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        index::gather(self, axis, x, indices, out)
    }
    fn scatter_add(
        &self,
        axis: usize,
        indices: TensorRef<'_, CudaBuffer>,
        updates: TensorRef<'_, CudaBuffer>,
        out: TensorMut<'_, CudaBuffer>,
    ) -> Result<()> {
        index::scatter_add(self, axis, indices, updates, out)
    }
    fn random_bits(&self, keys: TensorRef<'_, CudaBuffer>, out: TensorMut<'_, CudaBuffer>) -> Result<()> {
        index::random_bits(self, keys, out)
    }

    fn argsort(&self, axis: usize, x: TensorRef<'_, CudaBuffer>, out: TensorMut<'_, CudaBuffer>) -> Result<()> {
        index::argsort(self, axis, x, out)
    }

    fn copy(&self, x: TensorRef<'_, CudaBuffer>, out: TensorMut<'_, CudaBuffer>) -> Result<()> {
        if x.dtype != out.dtype {
            return Err(Error::InvalidArgument {
                op: "copy",
                message: format!("{} into {}: use cast", x.dtype, out.dtype),
            });
        }
        self.cast(x, out)
    }

    fn cast(&self, x: TensorRef<'_, CudaBuffer>, out: TensorMut<'_, CudaBuffer>) -> Result<()> {
        const OP: &str = "cast";
        validate_elementwise(OP, &[x.layout], out.layout)?;
        x.check(OP, "the input")?;
        out.check(OP, "the output")?;
        Self::types(OP, &[x.dtype, out.dtype])?;
        let f = self.kernel(&format!("cast {} {}", x.dtype, out.dtype), || cast_source(x.dtype, out.dtype))?;
        let g = geometry(OP, out.layout, &[x.layout])?;
        self.launch(OP, &f, &g, &[x.buffer], out.buffer)
    }
}

pub(crate) const ELEMENTWISE: &str = include_str!("../kernels/elementwise.cu");

/// The types of the floating-point-only primitives (attention, convolution).
pub(crate) const FLOAT_TYPES: [DType; 4] = [DType::F32, DType::F64, DType::F16, DType::BF16];

/// The source of a floating-point-only kernel: `body` (a kernel file) instantiated as
/// `instance(T, A)` for operands of type `t`, accumulating in `A` (f32, or f64 for f64).
pub(crate) fn float_source(body: &str, instance: &str, t: DType) -> String {
    let acc = if t == DType::F64 { "double" } else { "float" };
    format!("{ELEMENTWISE}{body}\n{instance}({}, {acc})\n", c(t))
}

/// Whether kernels for `arch` (`sm_80`, `sm_90a`, ...) have `mma.sync.m16n8k16` and `cp.async`
/// (sm_80 and later), which every tensor-core kernel here is built on.
pub(crate) fn has_mma_sync(arch: &str) -> bool {
    arch.trim_start_matches("sm_").trim_end_matches('a').parse::<u32>().is_ok_and(|v| v >= 80)
}

pub(crate) fn c(t: DType) -> &'static str {
    exprs::c_type(t).expect("types were checked")
}

fn unary_source(op: UnaryOp, t: DType, out: DType) -> String {
    let (ct, e) = (exprs::compute_type(t), exprs::unary(op, t));
    format!("{ELEMENTWISE}\nSTRATA_UNARY({}, {}, {ct}, {e})\n", c(t), c(out))
}

fn binary_source(op: BinaryOp, t: DType, out: DType) -> String {
    let (ct, e) = (exprs::compute_type(t), exprs::binary(op, t));
    format!("{ELEMENTWISE}\nSTRATA_BINARY({}, {}, {ct}, {e})\n", c(t), c(out))
}

fn select_source(t: DType) -> String {
    format!("{ELEMENTWISE}\nSTRATA_SELECT({})\n", c(t))
}

fn cast_source(from: DType, to: DType) -> String {
    format!("{ELEMENTWISE}\nSTRATA_CAST({}, {}, {})\n", c(from), c(to), exprs::cast(from, to))
}

/// The types the CUDA kernels handle so far.
pub fn supported_dtypes() -> Vec<DType> {
    DType::ALL.iter().copied().filter(|t| exprs::c_type(*t).is_some()).collect()
}

/// Fused programs that between them use every float unary and binary operation, in float32
/// and float64.
fn fused_samples() -> Vec<String> {
    use strata_core::kernel::FusedOp;
    let mut units = Vec::new();
    for t in [DType::F32, DType::F64] {
        let mut ops = vec![FusedOp::Input(0), FusedOp::Input(1)];
        for &u in UnaryOp::ALL {
            if u.output_dtype(t) == Ok(t) {
                ops.push(FusedOp::Unary(u, ops.len() - 1));
            }
        }
        for &b in BinaryOp::ALL {
            if b.output_dtype(t) == Ok(t) {
                ops.push(FusedOp::Binary(b, ops.len() - 1, 1));
            }
        }
        units.push(fused::source(&Fused { dtype: t, ops }, 2));
    }
    units
}

/// Every kernel the backend can generate, grouped by kernel file into translation units (each
/// kernel renamed so they can live together): what CI compiles through NVRTC for each
/// architecture, so that a kernel that does not compile fails CI without a GPU. Returns
/// `(family, source)` pairs: "elementwise", "reduce", "index", "gemm", "fused".
pub fn all_kernel_sources() -> Vec<(&'static str, String)> {
    let types = supported_dtypes();
    let mut elementwise = Vec::new();
    for &t in &types {
        for &op in UnaryOp::ALL {
            if let Ok(out) = op.output_dtype(t) {
                elementwise.push(unary_source(op, t, out));
            }
        }
        for &op in BinaryOp::ALL {
            if let Ok(out) = op.output_dtype(t) {
                elementwise.push(binary_source(op, t, out));
            }
        }
        elementwise.push(select_source(t));
        for &u in &types {
            elementwise.push(cast_source(t, u));
        }
    }
    let join = |units: Vec<String>| {
        let mut src = ELEMENTWISE.to_owned();
        for (i, u) in units.iter().enumerate() {
            let body = u.strip_prefix(ELEMENTWISE).unwrap_or(u);
            src.push_str(&format!("#undef strata_kernel\n#define strata_kernel strata_kernel_{i}\n{body}"));
        }
        src
    };
    vec![
        ("elementwise", join(elementwise)),
        ("reduce", join(reduce::all_sources(&types))),
        ("index", join(index::all_sources())),
        ("gemm", join(matmul::all_sources())),
        ("fused", join(fused_samples())),
        ("attention", join(attention::all_sources())),
        ("conv", join(conv::all_sources())),
        ("qmatmul", join(qmatmul::all_sources())),
    ]
}
