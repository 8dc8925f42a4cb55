//! The lazy graph: an [`Array`] is a handle to a node (a primitive and its inputs, with the
//! output's shape and dtype known from the start). [`eval`](Array::eval) runs the pending
//! nodes in dependency order, each on its device's backend, and then drops their inputs so a
//! long computation does not pin its intermediates — unless a transform is tracing, which
//! needs the graph afterwards.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use strata_core::kernel::Layout;
use strata_core::{DType, Error, Result};
use strata_cpu::CpuBuffer;

use crate::device::Device;
use crate::prim::Prim;

/// Memory on some device.
pub(crate) enum Buffer {
    Cpu(CpuBuffer),
    #[cfg(feature = "cuda")]
    Cuda(strata_cuda::CudaBuffer),
    #[cfg(feature = "wgpu")]
    Wgpu(strata_wgpu::WgpuBuffer),
}

impl Buffer {
    /// The device the memory is on.
    pub(crate) fn device(&self) -> Device {
        match self {
            Buffer::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Buffer::Cuda(_) => Device::Cuda,
            #[cfg(feature = "wgpu")]
            Buffer::Wgpu(_) => Device::Wgpu,
        }
    }

    /// Size in bytes.
    pub(crate) fn byte_len(&self) -> usize {
        match self {
            Buffer::Cpu(b) => b.as_bytes().len(),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => strata_core::kernel::Storage::byte_len(b),
            #[cfg(feature = "wgpu")]
            Buffer::Wgpu(b) => strata_core::kernel::Storage::byte_len(b),
        }
    }

    /// The first `len` bytes, on the host (a device buffer is copied back, after the work
    /// queued before).
    pub(crate) fn host_bytes(&self, len: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            Buffer::Cpu(b) => Ok(std::borrow::Cow::Borrowed(&b.as_bytes()[..len])),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(b) => {
                use strata_core::kernel::Backend;
                let mut out = vec![0u8; len];
                crate::device::cuda()?.download(b, &mut out)?;
                Ok(std::borrow::Cow::Owned(out))
            }
            #[cfg(feature = "wgpu")]
            Buffer::Wgpu(b) => {
                use strata_core::kernel::Backend;
                let mut out = vec![0u8; len];
                crate::device::wgpu()?.download(b, &mut out)?;
                Ok(std::borrow::Cow::Owned(out))
            }
        }
    }
}

/// An evaluated array: a buffer (shared between views) and the layout over it.
#[derive(Clone)]
pub(crate) struct Data {
    pub buffer: Arc<Buffer>,
    pub layout: Layout,
}

pub(crate) struct Node {
    pub id: u64,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub device: Device,
    pub prim: Prim,
    inputs: Mutex<Vec<Array>>,
    data: OnceLock<Data>,
}

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many graph nodes (arrays and the intermediates they still hold) are alive: a long
/// loop that evaluates as it goes should keep this flat.
pub fn live_nodes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

impl Drop for Node {
    // A chain of a million pending adds would otherwise be dropped by a million nested calls.
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        let mut stack = std::mem::take(self.inputs.get_mut().unwrap_or_else(|e| e.into_inner()));
        while let Some(a) = stack.pop() {
            if let Ok(mut node) = Arc::try_unwrap(a.0) {
                stack.append(node.inputs.get_mut().unwrap_or_else(|e| e.into_inner()));
            }
        }
    }
}

/// An n-dimensional array: a cheap, clonable handle to a lazily evaluated value.
///
/// ```
/// use strata::Array;
/// let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// let b = (&a * &a + 1.0).sum(None, false)?;
/// assert_eq!(b.item::<f32>()?, 34.0);
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone)]
pub struct Array(pub(crate) Arc<Node>);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// How many transforms are tracing on this thread: while any is, evaluated nodes keep
    /// their inputs (the transform walks the graph afterwards).
    static TRACING: Cell<usize> = const { Cell::new(0) };
}

/// Keeps evaluated nodes' inputs while alive.
pub(crate) struct TraceGuard(());

impl TraceGuard {
    pub(crate) fn new() -> TraceGuard {
        TRACING.with(|t| t.set(t.get() + 1));
        TraceGuard(())
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        TRACING.with(|t| t.set(t.get() - 1));
    }
}

impl Array {
    /// A pending node.
    pub(crate) fn node(prim: Prim, inputs: Vec<Array>, shape: Vec<usize>, dtype: DType, device: Device) -> Array {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Array(Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            dtype,
            device,
            prim,
            inputs: Mutex::new(inputs),
            data: OnceLock::new(),
        }))
    }

    /// An evaluated leaf.
    pub(crate) fn from_data(data: Data, dtype: DType, device: Device) -> Array {
        let a = Array::node(Prim::Constant, Vec::new(), data.layout.shape().to_vec(), dtype, device);
        let _ = a.0.data.set(data);
        a
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    pub(crate) fn prim(&self) -> &Prim {
        &self.0.prim
    }

    pub(crate) fn inputs(&self) -> MutexGuard<'_, Vec<Array>> {
        self.0.inputs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn data(&self) -> Option<&Data> {
        self.0.data.get()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.0.shape.len()
    }

    /// The number of elements.
    pub fn size(&self) -> usize {
        self.0.shape.iter().product()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The device it lives on.
    pub fn device(&self) -> Device {
        self.0.device
    }

    /// Whether the value has been computed.
    pub fn is_evaluated(&self) -> bool {
        self.0.data.get().is_some()
    }

    /// Computes the value (and everything it depends on that is still pending).
    pub fn eval(&self) -> Result<()> {
        eval_all(&[self])
    }

    /// Runs one node whose inputs are evaluated.
    fn realize(&self) -> Result<()> {
        let mut inputs = self.inputs();
        // Another thread (an `async_eval`) may have computed it while this one waited.
        if self.is_evaluated() {
            return Ok(());
        }
        let data = {
            let datas: Vec<&Data> = inputs
                .iter()
                .map(|i| i.data().ok_or_else(|| internal("an input was not evaluated before its user")))
                .collect::<Result<_>>()?;
            let dtypes: Vec<DType> = inputs.iter().map(|i| i.dtype()).collect();
            match self.prim() {
                Prim::Custom(c) => c.eval(&inputs)?,
                _ => crate::prim::eval(self, &datas, &dtypes)?,
            }
        };
        debug_assert_eq!(data.layout.shape(), self.shape(), "{:?}", self.prim());
        let _ = self.0.data.set(data);
        if TRACING.with(|t| t.get()) == 0 {
            inputs.clear();
        }
        Ok(())
    }
}

pub(crate) fn internal(what: &str) -> Error {
    Error::InvalidArgument { op: "eval", message: format!("internal error: {what}") }
}

/// Evaluates several arrays together (shared work is done once).
pub fn eval_all(arrays: &[&Array]) -> Result<()> {
    let pending = topo_pending(arrays);
    if pending.is_empty() {
        return Ok(());
    }
    let _span = strata_trace::span("eval");
    // Every kernel is a span in the flight recorder, named by its primitive. One clock read per
    // kernel: each span starts where the previous one ended.
    let tracing = strata_trace::enabled();
    let mut start = if tracing { strata_trace::now_ns() } else { 0 };
    for a in pending {
        a.realize()?;
        if tracing {
            let end = strata_trace::now_ns();
            strata_trace::complete_span(a.prim().name(), start, end);
            start = end;
        }
    }
    Ok(())
}

/// Work started by [`async_eval`]; [`wait`](EvalHandle::wait) for its result (reading any of
/// the arrays waits too, by evaluating what is still pending).
pub struct EvalHandle(Option<std::thread::JoinHandle<Result<()>>>);

impl EvalHandle {
    /// Waits for the evaluation and returns its result.
    pub fn wait(mut self) -> Result<()> {
        match self.0.take() {
            None => Ok(()),
            Some(h) => h.join().unwrap_or_else(|_| Err(internal("the evaluation thread panicked"))),
        }
    }
}

/// Starts evaluating `arrays` on a background thread and returns at once (MLX's `async_eval`):
/// the caller can build the next step's graph meanwhile. Inside a transform it evaluates
/// before returning, since the transform needs the graph it is tracing.
///
/// ```
/// let x = strata::arange(0.0, 1e5, 1.0, strata::DType::F32)?;
/// let y = strata::sin(&x)?.sum(None, false)?;
/// let h = strata::async_eval(&[&y]);
/// let z = strata::cos(&x)?; // built while y is computed
/// h.wait()?;
/// assert!(y.is_evaluated() && !z.is_evaluated());
/// # Ok::<(), strata::Error>(())
/// ```
pub fn async_eval(arrays: &[&Array]) -> EvalHandle {
    let owned: Vec<Array> = arrays.iter().map(|&a| a.clone()).collect();
    if TRACING.with(|t| t.get()) > 0 {
        let r = eval_all(arrays);
        return EvalHandle(Some(std::thread::spawn(move || r)));
    }
    EvalHandle(Some(std::thread::spawn(move || eval_all(&owned.iter().collect::<Vec<_>>()))))
}

/// The pending nodes `roots` depend on, inputs before users.
fn topo_pending(roots: &[&Array]) -> Vec<Array> {
    topo(roots.iter().map(|&a| a.clone()), Array::is_evaluated, |_| false)
}

/// Every node `roots` depend on (evaluated or not, as far as inputs are kept), inputs
/// before users, not looking below the nodes in `stop`.
pub(crate) fn topo_until(roots: &[Array], stop: &HashSet<u64>) -> Vec<Array> {
    topo(roots.iter().cloned(), |_| false, |a| stop.contains(&a.id()))
}

/// Depth-first post-order from `roots` without recursion: nodes for which `skip` holds are
/// left out (with everything only they lead to); `stop` nodes are kept but not looked below.
fn topo(
    roots: impl DoubleEndedIterator<Item = Array>,
    skip: impl Fn(&Array) -> bool,
    stop: impl Fn(&Array) -> bool,
) -> Vec<Array> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(Array, bool)> = roots.rev().map(|a| (a, false)).collect();
    while let Some((a, expanded)) = stack.pop() {
        if expanded {
            order.push(a);
            continue;
        }
        if skip(&a) || !seen.insert(a.id()) {
            continue;
        }
        let inputs: Vec<Array> = if stop(&a) {
            Vec::new()
        } else {
            a.inputs().iter().filter(|i| !skip(i) && !seen.contains(&i.id())).cloned().collect()
        };
        stack.push((a, true));
        stack.extend(inputs.into_iter().rev().map(|i| (i, false)));
    }
    order
}
