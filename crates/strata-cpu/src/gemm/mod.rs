//! Dense matrix multiplication, `C = A·B` or `C = A·B + C`, with an optional epilogue (bias
//! and activation), for any strides.
//!
//! The structure is BLIS's: the `n` dimension is cut into panels of `NC` columns, `k` into
//! blocks of `KC`, `m` into blocks of `MC`; each `KC × NC` block of B and `MC × KC` block of A
//! is packed (converted to the accumulator type, zero-padded to whole tiles, laid out in the
//! order the micro-kernel reads) so that the micro-kernel streams both from cache at full
//! speed. Packing is also where transposes, strides and 16-bit inputs cost nothing extra.
//! Threads split the larger of `m` and `n` into contiguous parts, each running the whole
//! algorithm on its part with its own packing buffers.
//!
//! Accumulation is in `f32` for f32/f16/bf16 inputs and in `f64` for f64. Outputs that are
//! not the accumulator type (f16/bf16) are accumulated in an f32 workspace and converted once,
//! after the epilogue. bf16 · bf16 products on CPUs with AVX-512 BF16 keep their operands in
//! bf16: the panels hold pairs of k steps per 32-bit slot for `vdpbf16ps` (`kernels`).

mod gemv;
pub(crate) mod kernels;

use std::cell::RefCell;

use half::{bf16, f16};
use kernels::Microkernel;

use crate::activation::{Activation, Apply};

/// The accumulator types: f32 and f64.
pub(crate) trait Acc: Copy + Default + Send + Sync + PartialEq + Input<Self> + Output<Self> + 'static {
    fn kernel() -> Microkernel<Self>;
    /// The kernel for bf16 · bf16 products that reads bf16 pairs, where there is one.
    fn pair_kernel() -> Option<Microkernel<Self>> {
        None
    }
    fn activate(self, act: Activation) -> Self;
    fn mul_add(a: Self, b: Self, c: Self) -> Self;
    fn add(a: Self, b: Self) -> Self;
    /// `self · s` (the factor of a scaled product).
    fn scaled(self, s: f32) -> Self;
    /// Cache blocking `(MC, KC, NC)`: A blocks of `MC × KC` live in L2, B micro-panels of
    /// `KC × NR` in L1.
    fn blocking(kernel: &Microkernel<Self>) -> (usize, usize, usize);
}

impl Acc for f32 {
    fn kernel() -> Microkernel<f32> {
        kernels::f32_kernel()
    }
    fn pair_kernel() -> Option<Microkernel<f32>> {
        kernels::bf16_pair_kernel()
    }
    fn activate(self, act: Activation) -> f32 {
        act.apply_f32(self)
    }
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    fn scaled(self, s: f32) -> f32 {
        self * s
    }
    fn blocking(k: &Microkernel<f32>) -> (usize, usize, usize) {
        // 12x32: A block 120x256 (120 KiB, L2; its 12x256 micro-panel stays in L1), B panel
        // 256x1024 (1 MiB, L2) streaming past it. Tuned on a 2-core Sapphire Rapids
        // (BENCHMARKS.md): larger A blocks and K blocks of 128 measured no better. The bf16
        // pair kernel packs two k steps in the bytes of one: twice the K block, same bytes.
        (k.mr * 10, if k.pairs { 512 } else { 256 }, k.nr * 32)
    }
}

impl Acc for f64 {
    fn kernel() -> Microkernel<f64> {
        kernels::f64_kernel()
    }
    fn activate(self, act: Activation) -> f64 {
        act.apply_f64(self)
    }
    #[inline(always)]
    fn mul_add(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn add(a: f64, b: f64) -> f64 {
        a + b
    }
    fn scaled(self, s: f32) -> f64 {
        self * f64::from(s)
    }
    fn blocking(k: &Microkernel<f64>) -> (usize, usize, usize) {
        (k.mr * 20, 256, k.nr * 128)
    }
}

/// int8 products accumulate exactly in i32 (wrapping only past 2^31, i.e. for k > 2^17).
impl Acc for i32 {
    fn kernel() -> Microkernel<i32> {
        kernels::i32_kernel()
    }
    fn activate(self, _: Activation) -> i32 {
        // Matmul2d::validate_types admits no activation on integer outputs.
        self
    }
    #[inline(always)]
    fn mul_add(a: i32, b: i32, c: i32) -> i32 {
        a.wrapping_mul(b).wrapping_add(c)
    }
    #[inline(always)]
    fn add(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    fn scaled(self, s: f32) -> i32 {
        (f64::from(self) * f64::from(s)) as i32
    }
    fn blocking(k: &Microkernel<i32>) -> (usize, usize, usize) {
        (k.mr * 10, 256, k.nr * 32)
    }
}

/// An element the GEMM reads, widened to the accumulator `A` while packing.
pub(crate) trait Input<A>: Copy + Send + Sync {
    /// Whether this is the accumulator type itself (then it can be read without packing).
    const IS_ACC: bool;
    /// Whether this is bf16 (then [`Input::bits`] gives its bits, for the pair kernel).
    const BF16: bool = false;
    fn widen(self) -> A;
    /// The bits of a bf16 value (unused for other types).
    fn bits(self) -> u16 {
        0
    }
}

/// An element the GEMM writes.
pub(crate) trait Output<A>: Copy + Send + Sync {
    /// Whether this is the accumulator type itself (then C is its own workspace).
    const IS_ACC: bool;
    fn narrow(a: A) -> Self;
    fn widen(self) -> A;
}

macro_rules! io {
    ($acc:ty: $($t:ty => |$x:ident| $w:expr, |$a:ident| $n:expr, $is:expr;)*) => {$(
        impl Input<$acc> for $t {
            const IS_ACC: bool = $is;
            #[inline(always)]
            fn widen(self) -> $acc { let $x = self; $w }
        }
        impl Output<$acc> for $t {
            const IS_ACC: bool = $is;
            #[inline(always)]
            fn narrow($a: $acc) -> Self { $n }
            #[inline(always)]
            fn widen(self) -> $acc { let $x = self; $w }
        }
    )*};
}

io! { f32:
    f32 => |x| x, |a| a, true;
    f16 => |x| crate::elem::f16_to_f32(x), |a| crate::elem::f32_to_f16(a), false;
}

impl Input<f32> for bf16 {
    const IS_ACC: bool = false;
    const BF16: bool = true;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn bits(self) -> u16 {
        self.to_bits()
    }
}
impl Output<f32> for bf16 {
    const IS_ACC: bool = false;
    #[inline(always)]
    fn narrow(a: f32) -> Self {
        bf16::from_f32(a)
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}
io! { f64:
    f64 => |x| x, |a| a, true;
}
io! { i32:
    i32 => |x| x, |a| a, true;
}

// fp8 operands widen exactly (through a 256-entry table) and accumulate in f32.
impl Input<f32> for strata_core::formats::F8E4M3 {
    const IS_ACC: bool = false;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}
impl Input<f32> for strata_core::formats::F8E5M2 {
    const IS_ACC: bool = false;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

impl Input<i32> for i8 {
    const IS_ACC: bool = false;
    #[inline(always)]
    fn widen(self) -> i32 {
        i32::from(self)
    }
}

/// A read-only matrix view: element `(i, j)` is at `ptr + i*rs + j*cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<T> {
    pub ptr: *const T,
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

/// A mutable matrix view.
#[derive(Clone, Copy)]
pub(crate) struct MatMut<T> {
    pub ptr: *mut T,
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

// SAFETY: the views are only built over buffers the caller owns for the whole call, and
// threads write disjoint parts of C.
unsafe impl<T: Send> Send for Mat<T> {}
unsafe impl<T: Sync> Sync for Mat<T> {}
unsafe impl<T: Send> Send for MatMut<T> {}
unsafe impl<T: Sync> Sync for MatMut<T> {}

impl<T> Mat<T> {
    /// The `rows × cols` block starting at `(i, j)`.
    fn block(self, i: usize, j: usize, rows: usize, cols: usize) -> Self {
        // SAFETY: callers stay inside the matrix, whose elements are all in bounds.
        let ptr = unsafe { self.ptr.offset(i as isize * self.rs + j as isize * self.cs) };
        Mat { ptr, rows, cols, ..self }
    }
    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        // SAFETY: (i, j) is inside the view.
        unsafe { *self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
    }
}

impl<T> MatMut<T> {
    fn block(self, i: usize, j: usize, rows: usize, cols: usize) -> Self {
        // SAFETY: callers stay inside the matrix.
        let ptr = unsafe { self.ptr.offset(i as isize * self.rs + j as isize * self.cs) };
        MatMut { ptr, rows, cols, ..self }
    }
    #[inline(always)]
    pub(crate) unsafe fn at(&self, i: usize, j: usize) -> *mut T {
        // SAFETY: (i, j) is inside the view.
        unsafe { self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
    }
}

/// What happens to each output after the product: `act(acc + bias[j])`.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a, A> {
    pub bias: Option<&'a [A]>,
    pub activation: Activation,
}

impl<A: Acc> Epilogue<'_, A> {
    #[inline(always)]
    pub(crate) fn apply(&self, v: A, j: usize) -> A {
        let v = match self.bias {
            Some(b) => A::add(v, b[j]),
            None => v,
        };
        if self.activation == Activation::None { v } else { v.activate(self.activation) }
    }
}

/// Below this many multiply-adds per thread, splitting across threads costs more than it saves.
const MIN_WORK_PER_THREAD: usize = 1 << 21;

/// `C = A·B` (`accumulate`: `C = A·B + C`), then the epilogue. `A` is `m × k`, `B` is
/// `k × n`, `C` is `m × n`.
///
/// # Safety
/// Every element of the three views is inside its buffer, and C overlaps neither A nor B.
pub(crate) unsafe fn gemm<A: Acc, IA: Input<A>, IB: Input<A>, O: Output<A>>(
    a: Mat<IA>,
    b: Mat<IB>,
    c: MatMut<O>,
    accumulate: bool,
    epilogue: &Epilogue<'_, A>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert!(b.rows == k && c.rows == m && c.cols == n);
    if m == 0 || n == 0 {
        return;
    }
    let kernel = match A::pair_kernel() {
        Some(pairs) if IA::BF16 && IB::BF16 => pairs,
        _ => A::kernel(),
    };
    // SAFETY: forwarded from the caller.
    unsafe { gemm_with(&kernel, a, b, c, accumulate, epilogue) }
}

/// [`gemm`] with a given micro-kernel (tests run every kernel the CPU has).
///
/// # Safety
/// As for [`gemm`], the CPU has the kernel's instruction set, and a pair kernel gets bf16
/// operands.
pub(crate) unsafe fn gemm_with<A: Acc, IA: Input<A>, IB: Input<A>, O: Output<A>>(
    kernel: &Microkernel<A>,
    a: Mat<IA>,
    b: Mat<IB>,
    c: MatMut<O>,
    accumulate: bool,
    epilogue: &Epilogue<'_, A>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert!(!kernel.pairs || (IA::BF16 && IB::BF16 && std::mem::size_of::<A>() == 4));
    if m == 0 || n == 0 {
        return;
    }
    // Vector products stream the matrix without packing (only the default kernel's
    // instruction set is used for them; tests that pick a kernel use bigger shapes too).
    if m == 1 {
        // SAFETY: forwarded.
        return unsafe { gemv::gemv(a, b, c, accumulate, epilogue) };
    }
    if n == 1 {
        // Cᵀ = Bᵀ·Aᵀ; the single bias value then applies to every output.
        let bias: Option<Vec<A>> = epilogue.bias.map(|b| vec![b[0]; m]);
        let epi = Epilogue { bias: bias.as_deref(), activation: epilogue.activation };
        let bt = Mat { ptr: b.ptr, rows: 1, cols: k, rs: b.cs, cs: b.rs };
        let at = Mat { ptr: a.ptr, rows: k, cols: m, rs: a.cs, cs: a.rs };
        let ct = MatMut { ptr: c.ptr, rows: 1, cols: m, rs: c.cs, cs: c.rs };
        // SAFETY: the same elements, viewed transposed.
        return unsafe { gemv::gemv(bt, at, ct, accumulate, &epi) };
    }
    let work = m * n * k.max(1);
    let threads = rayon::current_num_threads().min(work / MIN_WORK_PER_THREAD).max(1);
    // A few rows against a row-major B: packing B would cost as much as the product, since
    // each element is used only m times. Read B in place instead, columns split across threads.
    if m <= 256 && k > 0 && b.cs == 1 && O::IS_ACC && c.cs == 1 {
        let parts = if rayon::current_thread_index().is_some() { 1 } else { threads };
        let panels = n.div_ceil(kernel.nr);
        let bound = |t: usize| (panels * t / parts * kernel.nr).min(n);
        rayon::scope(|scope| {
            for t in 0..parts {
                let (s, e) = (bound(t), bound(t + 1));
                if e > s {
                    scope.spawn(move |_| {
                        let epi = Epilogue { bias: epilogue.bias.map(|bias| &bias[s..e]), ..*epilogue };
                        // SAFETY: disjoint column ranges of B and C.
                        unsafe {
                            gemm_direct_b(kernel, a, b.block(0, s, k, e - s), c.block(0, s, m, e - s), accumulate, &epi)
                        };
                    });
                }
            }
        });
        return;
    }
    // Inside a rayon task the caller is already parallel (and a team could wait on a worker
    // that is waiting on us): run alone there.
    if threads == 1 || rayon::current_thread_index().is_some() {
        // SAFETY: forwarded from the caller.
        return with_scratch_team(kernel, (m, n, k), O::IS_ACC, |bufs| unsafe {
            gemm_team(kernel, a, b, c, accumulate, epilogue, &Team::ALONE, bufs)
        });
    }
    let Ok(mut shared) = SHARED.try_lock() else {
        // Another thread's product holds the team buffers: run alone.
        return with_scratch_team(kernel, (m, n, k), O::IS_ACC, |bufs| unsafe {
            gemm_team(kernel, a, b, c, accumulate, epilogue, &Team::ALONE, bufs)
        });
    };
    let lens = Buffers::<A>::lens(kernel, (m, n, k), O::IS_ACC, rayon::current_num_threads());
    let bufs = Buffers::carve(&mut shared, lens);
    let barrier = SpinBarrier::new(rayon::current_num_threads());
    rayon::broadcast(|ctx| {
        let team = Team { id: ctx.index(), size: ctx.num_threads(), barrier: Some(&barrier) };
        // SAFETY: forwarded; the team splits packing and tiles into disjoint parts and
        // synchronizes between the phases that read what others wrote.
        unsafe { gemm_team(kernel, a, b, c, accumulate, epilogue, &team, bufs) }
    });
}

/// Threads working on one product. They pack each B panel together (a share of its
/// micro-panels each), then each computes the rows it owns against the whole panel, packing
/// its own A blocks: two barriers per K block, none per A block.
pub(crate) struct Team<'a> {
    id: usize,
    size: usize,
    barrier: Option<&'a SpinBarrier>,
}

/// A barrier for a few threads that each own a core: they spin (briefly yielding if a wait
/// runs long) rather than sleep, since a GEMM crosses dozens of barriers and a futex round
/// trip would cost as much as the work between them.
pub(crate) struct SpinBarrier {
    size: usize,
    arrived: std::sync::atomic::AtomicUsize,
    generation: std::sync::atomic::AtomicUsize,
}

impl SpinBarrier {
    fn new(size: usize) -> Self {
        SpinBarrier { size, arrived: 0.into(), generation: 0.into() }
    }

    fn wait(&self) {
        use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
        let generation = self.generation.load(Acquire);
        if self.arrived.fetch_add(1, AcqRel) + 1 == self.size {
            self.arrived.store(0, Release);
            self.generation.fetch_add(1, Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Acquire) == generation {
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Team<'_> {
    const ALONE: Team<'static> = Team { id: 0, size: 1, barrier: None };

    fn sync(&self) {
        if let Some(b) = self.barrier {
            b.wait();
        }
    }

    /// This member's share of `0..n` items (contiguous).
    fn share(&self, n: usize) -> std::ops::Range<usize> {
        n * self.id / self.size..n * (self.id + 1) / self.size
    }
}

/// The packing buffers and workspace of one product (shared by a team), as raw parts.
#[derive(Clone, Copy)]
pub(crate) struct Buffers<A> {
    apack: *mut A,
    bpack: *mut A,
    work: *mut A,
}

// SAFETY: members write disjoint parts between barriers.
unsafe impl<A> Send for Buffers<A> {}
unsafe impl<A> Sync for Buffers<A> {}

impl<A: Acc> Buffers<A> {
    /// Lengths of the A blocks (one per member), the B panel and the workspace.
    fn lens(kernel: &Microkernel<A>, (m, n, k): (usize, usize, usize), out_is_acc: bool, members: usize) -> [usize; 3] {
        let (mc, kc, nc) = blocking_for(kernel, m, n, k, out_is_acc);
        let work = if out_is_acc { 0 } else { m.div_ceil(kernel.mr) * kernel.mr * nc };
        [members * mc * kc, kc * nc, work]
    }

    /// Three 64-byte aligned regions of `store` (grown as needed).
    fn carve(store: &mut Vec<f64>, lens: [usize; 3]) -> Buffers<A> {
        assert!(std::mem::align_of::<A>() <= 8 && std::mem::size_of::<A>() <= 8);
        let bytes: Vec<usize> = lens.iter().map(|l| (l * std::mem::size_of::<A>()).div_ceil(64) * 64).collect();
        let total = bytes.iter().sum::<usize>() + 64;
        if store.len() * 8 < total {
            store.resize(total.div_ceil(8), 0.0);
        }
        let raw = store.as_mut_ptr() as *mut u8;
        let base = raw.wrapping_add(raw.align_offset(64));
        // The regions are disjoint and inside `store` (64 spare bytes cover the alignment).
        Buffers {
            apack: base as *mut A,
            bpack: base.wrapping_add(bytes[0]) as *mut A,
            work: base.wrapping_add(bytes[0] + bytes[1]) as *mut A,
        }
    }
}

/// Team buffers: one product at a time holds them.
static SHARED: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

/// Runs `f` with buffers from this thread's scratch.
fn with_scratch_team<A: Acc, R>(
    kernel: &Microkernel<A>,
    (m, n, k): (usize, usize, usize),
    out_is_acc: bool,
    f: impl FnOnce(Buffers<A>) -> R,
) -> R {
    SCRATCH.with(|s| {
        let lens = Buffers::<A>::lens(kernel, (m, n, k), out_is_acc, 1);
        f(Buffers::carve(&mut s.borrow_mut(), lens))
    })
}

/// Cache blocking for a product of this size: the kernel's `(MC, KC, NC)`, shrunk to the
/// problem, with a modest NC when the output needs an f32 workspace.
fn blocking_for<A: Acc>(
    kernel: &Microkernel<A>,
    m: usize,
    n: usize,
    k: usize,
    out_is_acc: bool,
) -> (usize, usize, usize) {
    let (mc, kc, nc) = A::blocking(kernel);
    let nc = if out_is_acc { nc } else { nc.min(kernel.nr * 16) };
    (mc.min(m.div_ceil(kernel.mr) * kernel.mr), kc.min(k.max(1)), nc.min(n.div_ceil(kernel.nr) * kernel.nr))
}

thread_local! {
    /// Packing buffers and workspace, kept per thread so repeated calls do not page-fault.
    static SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// The blocked product, run by every member of `team` (alone: a team of one).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_team<A: Acc, IA: Input<A>, IB: Input<A>, O: Output<A>>(
    kernel: &Microkernel<A>,
    a: Mat<IA>,
    b: Mat<IB>,
    c: MatMut<O>,
    accumulate: bool,
    epilogue: &Epilogue<'_, A>,
    team: &Team<'_>,
    bufs: Buffers<A>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if k == 0 {
        // An empty sum: C = 0 (+ C), then the epilogue.
        for i in team.share(m) {
            for j in 0..n {
                // SAFETY: (i, j) is inside C.
                unsafe {
                    let p = c.at(i, j);
                    let v = if accumulate { (*p).widen() } else { A::default() };
                    *p = O::narrow(epilogue.apply(v, j));
                }
            }
        }
        return;
    }
    let (mr, nr) = (kernel.mr, kernel.nr);
    let (mc_max, kc_max, nc_max) = blocking_for(kernel, m, n, k, O::IS_ACC);
    // The buffers were carved for these sizes. Members write disjoint parts of them between
    // barriers and read what others wrote only after one; every access goes through a raw
    // pointer or a slice of exactly the part being written.
    let Buffers { apack, bpack, work } = bufs;
    let apack = apack.wrapping_add(team.id * mc_max * kc_max);
    // This member's rows, in whole micro-panels.
    let rows = team.share(m.div_ceil(mr));
    let (r0, r1) = (rows.start * mr, (rows.end * mr).min(m));
    let direct = O::IS_ACC && c.cs == 1;
    let finishing = !O::IS_ACC || epilogue.bias.is_some() || epilogue.activation != Activation::None;
    let mut tile = vec![A::default(); mr * nr];
    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        let panels = nc.div_ceil(nr);
        if !O::IS_ACC && accumulate {
            for i in r0..r1 {
                for j in 0..nc {
                    // SAFETY: (i, jc + j) is inside C; the workspace rows are this member's.
                    unsafe { *work.add(i * nc_max + j) = (*c.at(i, jc + j)).widen() };
                }
            }
        }
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            let ks = kernel.steps(kc);
            let (first, last) = (pc == 0, pc + kc == k);
            let add = !first || accumulate;
            // Everyone is done with the previous B panel; pack this one, a share each.
            team.sync();
            let mine = team.share(panels);
            if !mine.is_empty() {
                let cols = (mine.end * nr).min(nc) - mine.start * nr;
                // SAFETY: the columns are inside B; the packed panels are this member's part.
                unsafe {
                    let out = std::slice::from_raw_parts_mut(bpack.add(mine.start * nr * ks), mine.len() * nr * ks);
                    pack_b_for(kernel, b.block(pc, jc + mine.start * nr, kc, cols), out);
                }
            }
            team.sync();
            for ic in (r0..r1).step_by(mc_max) {
                let mc = mc_max.min(r1 - ic);
                // SAFETY: the rows are inside A; the A buffer is this member's.
                unsafe {
                    let out = std::slice::from_raw_parts_mut(apack, mc.div_ceil(mr) * mr * ks);
                    pack_a_for(kernel, a.block(ic, pc, mc, kc), out);
                }
                // The A micro-panel (mr × kc) stays in L1 while the B micro-panels stream
                // past it from L2.
                for ir in (0..mc).step_by(mr) {
                    let (i, mt) = (ic + ir, mr.min(mc - ir));
                    let ap = apack.wrapping_add(ir * ks) as *const A;
                    for jr in (0..nc).step_by(nr) {
                        let nt = nr.min(nc - jr);
                        let bp = bpack.wrapping_add(jr * ks) as *const A;
                        let cb = c.block(i, jc + jr, mt, nt);
                        // SAFETY: the packed panels hold kc steps; each C target holds a
                        // whole tile (C itself for full tiles, else the workspace or the
                        // tile buffer) and belongs to this member's rows.
                        unsafe {
                            if !O::IS_ACC {
                                (kernel.run)(ks, ap, bp, nr, work.add(i * nc_max + jr), nc_max, add);
                            } else if direct && mt == mr && nt == nr {
                                (kernel.run)(ks, ap, bp, nr, cb.ptr as *mut A, c.rs as usize, add);
                            } else {
                                (kernel.run)(ks, ap, bp, nr, tile.as_mut_ptr(), nr, false);
                                add_tile(&tile, nr, cb, add);
                            }
                            if last && finishing {
                                finish(cb, work.wrapping_add(i * nc_max + jr), nc_max, epilogue, jc + jr);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The product for a few rows of A against a row-major B read in place (the kernel steps
/// through B's rows with stride `b.rs`); only partial edge panels are packed.
unsafe fn gemm_direct_b<A: Acc, IA: Input<A>, IB: Input<A>, O: Output<A>>(
    kernel: &Microkernel<A>,
    a: Mat<IA>,
    b: Mat<IB>,
    c: MatMut<O>,
    accumulate: bool,
    epilogue: &Epilogue<'_, A>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let (mr, nr) = (kernel.mr, kernel.nr);
    let kc_max = A::blocking(kernel).1.min(k.max(1));
    let finishing = epilogue.bias.is_some() || epilogue.activation != Activation::None;
    // Reading B in place needs it in the accumulator type already.
    let in_place = IB::IS_ACC;
    // All m rows of A are packed at once (m may exceed the usual MC).
    let lens = [m.div_ceil(mr) * mr * kc_max, kc_max * nr, 0];
    SCRATCH.with(|s| {
        let bufs = Buffers::<A>::carve(&mut s.borrow_mut(), lens);
        let mut tile = vec![A::default(); mr * nr];
        let (apack, bpack) = (bufs.apack, bufs.bpack);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            let ks = kernel.steps(kc);
            let (first, last) = (pc == 0, pc + kc == k);
            let add = !first || accumulate;
            // SAFETY: the rows are inside A; the buffer holds m rounded up to mr rows of kc.
            unsafe {
                let out = std::slice::from_raw_parts_mut(apack, m.div_ceil(mr) * mr * ks);
                pack_a_for(kernel, a.block(0, pc, m, kc), out)
            };
            for jr in (0..n).step_by(nr) {
                let nt = nr.min(n - jr);
                let (bp, ldb) = if nt == nr && in_place {
                    // SAFETY: B's element (pc, jr); the kernel reads nr columns of kc rows.
                    (unsafe { b.ptr.offset(pc as isize * b.rs + jr as isize) } as *const A, b.rs as usize)
                } else {
                    // SAFETY: the partial panel is inside B; the buffer holds kc × nr.
                    unsafe {
                        pack_b_for(kernel, b.block(pc, jr, kc, nt), std::slice::from_raw_parts_mut(bpack, ks * nr))
                    };
                    (bpack as *const A, nr)
                };
                for ir in (0..m).step_by(mr) {
                    let mt = mr.min(m - ir);
                    let cb = c.block(ir, jr, mt, nt);
                    let ap = apack.wrapping_add(ir * ks) as *const A;
                    // SAFETY: as in gemm_team.
                    unsafe {
                        if mt == mr && nt == nr {
                            (kernel.run)(ks, ap, bp, ldb, cb.ptr as *mut A, c.rs as usize, add);
                        } else {
                            (kernel.run)(ks, ap, bp, ldb, tile.as_mut_ptr(), nr, false);
                            add_tile(&tile, nr, cb, add);
                        }
                        if last && finishing {
                            finish(cb, std::ptr::null(), 0, epilogue, jr);
                        }
                    }
                }
            }
        }
    });
}

/// `C = tile (+ C)` for an edge tile or a strided C.
#[inline(always)]
unsafe fn add_tile<A: Acc, O: Output<A>>(tile: &[A], nr: usize, c: MatMut<O>, add: bool) {
    for i in 0..c.rows {
        for (j, &t) in tile[i * nr..i * nr + c.cols].iter().enumerate() {
            // SAFETY: (i, j) is inside the C block.
            unsafe {
                let p = c.at(i, j);
                *p = O::narrow(if add { A::add((*p).widen(), t) } else { t });
            }
        }
    }
}

/// Applies the epilogue to a finished tile of C, taking the values from the workspace (rows
/// of `wstride`, this tile's origin at `work`) when the output is not the accumulator type.
#[inline(always)]
unsafe fn finish<A: Acc, O: Output<A>>(
    c: MatMut<O>,
    work: *const A,
    wstride: usize,
    epilogue: &Epilogue<'_, A>,
    j0: usize,
) {
    if !O::IS_ACC && c.cs == 1 && epilogue.bias.is_none() && epilogue.activation == Activation::None {
        // Only narrowing: contiguous rows, so the conversion vectorizes.
        for i in 0..c.rows {
            // SAFETY: row i of the C block and of the workspace tile.
            let (dst, src) = unsafe {
                (
                    std::slice::from_raw_parts_mut(c.ptr.offset(i as isize * c.rs), c.cols),
                    std::slice::from_raw_parts(work.wrapping_add(i * wstride), c.cols),
                )
            };
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = O::narrow(s);
            }
        }
        return;
    }
    for i in 0..c.rows {
        for j in 0..c.cols {
            // SAFETY: (i, j) is inside the C block.
            unsafe {
                let p = c.at(i, j);
                let v = if O::IS_ACC { (*p).widen() } else { *work.wrapping_add(i * wstride + j) };
                *p = O::narrow(epilogue.apply(v, j0 + j));
            }
        }
    }
}

/// Packs B for `kernel`: widened to the accumulator, or as bf16 pairs for a pair kernel.
unsafe fn pack_b_for<A: Acc, I: Input<A>>(kernel: &Microkernel<A>, b: Mat<I>, out: &mut [A]) {
    // SAFETY: forwarded; a pair kernel's accumulator is f32, four bytes like a pair.
    unsafe {
        if kernel.pairs {
            let out = std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u32, out.len());
            pack_b_pairs(b, out, kernel.nr)
        } else {
            pack_b(b, out, kernel.nr)
        }
    }
}

/// Packs A for `kernel`, as [`pack_b_for`].
unsafe fn pack_a_for<A: Acc, I: Input<A>>(kernel: &Microkernel<A>, a: Mat<I>, out: &mut [A]) {
    // SAFETY: as in pack_b_for.
    unsafe {
        if kernel.pairs {
            let out = std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u32, out.len());
            pack_a_pairs(a, out, kernel.mr)
        } else {
            pack_a(a, out, kernel.mr)
        }
    }
}

/// The 32-bit slot of bf16 values `lo` (step 2p) and `hi` (step 2p + 1).
#[inline(always)]
fn pair(lo: u16, hi: u16) -> u32 {
    u32::from(lo) | (u32::from(hi) << 16)
}

/// Packs a `kc × nc` block of bf16 B into `ceil(nc / nr)` panels of `ceil(kc / 2) × nr`
/// pairs (zero-padded: an odd k's last step pairs with +0, as does A's).
unsafe fn pack_b_pairs<A, I: Input<A>>(b: Mat<I>, out: &mut [u32], nr: usize) {
    let (kc, nc) = (b.rows, b.cols);
    let ks = kc.div_ceil(2);
    for (jp, j0) in (0..nc).step_by(nr).enumerate() {
        let panel = &mut out[jp * ks * nr..(jp + 1) * ks * nr];
        let w = nr.min(nc - j0);
        for q in 0..ks {
            let row = &mut panel[q * nr..(q + 1) * nr];
            let (p0, p1) = (2 * q, 2 * q + 1);
            if b.cs == 1 && p1 < kc {
                // Two contiguous rows of B, interleaved (vectorizes).
                // SAFETY: both row segments are inside B.
                let (r0, r1) = unsafe {
                    (
                        std::slice::from_raw_parts(b.ptr.offset(p0 as isize * b.rs).add(j0), w),
                        std::slice::from_raw_parts(b.ptr.offset(p1 as isize * b.rs).add(j0), w),
                    )
                };
                for ((d, x), y) in row.iter_mut().zip(r0).zip(r1) {
                    *d = pair(x.bits(), y.bits());
                }
            } else {
                for (j, d) in row[..w].iter_mut().enumerate() {
                    // SAFETY: (p0, j0 + j) and, below kc, (p1, j0 + j) are inside B.
                    let hi = if p1 < kc { unsafe { b.at(p1, j0 + j) }.bits() } else { 0 };
                    *d = pair(unsafe { b.at(p0, j0 + j) }.bits(), hi);
                }
            }
            row[w..].fill(0);
        }
    }
}

/// Packs an `mc × kc` block of bf16 A into `ceil(mc / mr)` panels of `ceil(kc / 2) × mr`
/// pairs (zero-padded).
unsafe fn pack_a_pairs<A, I: Input<A>>(a: Mat<I>, out: &mut [u32], mr: usize) {
    let (mc, kc) = (a.rows, a.cols);
    let ks = kc.div_ceil(2);
    for (ip, i0) in (0..mc).step_by(mr).enumerate() {
        let panel = &mut out[ip * ks * mr..(ip + 1) * ks * mr];
        let h = mr.min(mc - i0);
        if h < mr {
            panel.fill(0);
        }
        for i in 0..h {
            if a.cs == 1 {
                // A row of A: its pairs are adjacent values.
                // SAFETY: the row segment is inside A.
                let src = unsafe { std::slice::from_raw_parts(a.ptr.offset((i0 + i) as isize * a.rs), kc) };
                for (q, two) in src.chunks(2).enumerate() {
                    panel[q * mr + i] = pair(two[0].bits(), two.get(1).map_or(0, |v| v.bits()));
                }
            } else {
                for q in 0..ks {
                    let (p0, p1) = (2 * q, 2 * q + 1);
                    // SAFETY: (i0 + i, p0) and, below kc, (i0 + i, p1) are inside A.
                    let hi = if p1 < kc { unsafe { a.at(i0 + i, p1) }.bits() } else { 0 };
                    panel[q * mr + i] = pair(unsafe { a.at(i0 + i, p0) }.bits(), hi);
                }
            }
        }
    }
}

/// Packs a `kc × nc` block of B into `ceil(nc / nr)` panels of `kc × nr` (zero-padded).
unsafe fn pack_b<A: Acc, I: Input<A>>(b: Mat<I>, out: &mut [A], nr: usize) {
    let (kc, nc) = (b.rows, b.cols);
    for (jp, j0) in (0..nc).step_by(nr).enumerate() {
        let panel = &mut out[jp * kc * nr..(jp + 1) * kc * nr];
        let w = nr.min(nc - j0);
        for p in 0..kc {
            let row = &mut panel[p * nr..(p + 1) * nr];
            if b.cs == 1 {
                // SAFETY: the row segment is inside B.
                let src = unsafe { std::slice::from_raw_parts(b.ptr.offset(p as isize * b.rs).add(j0), w) };
                for (d, s) in row.iter_mut().zip(src) {
                    *d = s.widen();
                }
            } else {
                for (j, d) in row[..w].iter_mut().enumerate() {
                    // SAFETY: (p, j0 + j) is inside B.
                    *d = unsafe { b.at(p, j0 + j) }.widen();
                }
            }
            row[w..].fill(A::default());
        }
    }
}

/// Packs an `mc × kc` block of A into `ceil(mc / mr)` panels of `kc × mr` (zero-padded).
unsafe fn pack_a<A: Acc, I: Input<A>>(a: Mat<I>, out: &mut [A], mr: usize) {
    let (mc, kc) = (a.rows, a.cols);
    for (ip, i0) in (0..mc).step_by(mr).enumerate() {
        let panel = &mut out[ip * kc * mr..(ip + 1) * kc * mr];
        let h = mr.min(mc - i0);
        if h < mr {
            panel.fill(A::default());
        }
        if a.rs == 1 {
            // Column-major A (a transposed row-major one): each step is a contiguous column.
            for (p, dst) in panel.chunks_exact_mut(mr).enumerate() {
                // SAFETY: the column segment is inside A.
                let src = unsafe { std::slice::from_raw_parts(a.ptr.offset(p as isize * a.cs).add(i0), h) };
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s.widen();
                }
            }
        } else if a.cs == 1 && h == mr && !I::IS_ACC && mr <= 16 {
            // Row-major A of a narrower type: widen 16 steps of each row at once (contiguous,
            // so it vectorizes), then interleave.
            const STEP: usize = 16;
            let mut tmp = [[A::default(); STEP]; 16];
            for p0 in (0..kc).step_by(STEP) {
                let w = STEP.min(kc - p0);
                for (i, t) in tmp.iter_mut().enumerate().take(mr) {
                    // SAFETY: (i0 + i, p0..p0 + w) is inside A.
                    let src = unsafe { std::slice::from_raw_parts(a.ptr.offset((i0 + i) as isize * a.rs).add(p0), w) };
                    for (d, s) in t.iter_mut().zip(src) {
                        *d = s.widen();
                    }
                }
                for (q, dst) in panel[p0 * mr..(p0 + w) * mr].chunks_exact_mut(mr).enumerate() {
                    for (d, t) in dst.iter_mut().zip(&tmp) {
                        *d = t[q];
                    }
                }
            }
        } else if a.cs == 1 && h == mr {
            // Row-major A: read `mr` rows side by side so the writes stay contiguous.
            let mut rows = [std::ptr::null::<I>(); 16];
            for (i, r) in rows.iter_mut().enumerate().take(mr) {
                // SAFETY: row i0 + i is inside A.
                *r = unsafe { a.ptr.offset((i0 + i) as isize * a.rs) };
            }
            for (p, dst) in panel.chunks_exact_mut(mr).enumerate() {
                for (d, r) in dst.iter_mut().zip(&rows) {
                    // SAFETY: (i0 + i, p) is inside A.
                    *d = unsafe { *r.add(p) }.widen();
                }
            }
        } else {
            for i in 0..h {
                for p in 0..kc {
                    // SAFETY: (i0 + i, p) is inside A.
                    panel[p * mr + i] = unsafe { a.at(i0 + i, p) }.widen();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Fresh pseudo-random values in [-1, 1) (never all zeros).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// Checks `gemm_with` for one kernel against an f64 reference: `m × k` times `k × n`,
    /// stored with the given transposes and padding between rows, C poisoned with NaN
    /// (multiply) or random (accumulate).
    #[allow(clippy::too_many_arguments)]
    fn check<A, I, O>(
        kernel: &Microkernel<A>,
        m: usize,
        n: usize,
        k: usize,
        ta: bool,
        tb: bool,
        pad: usize,
        acc: bool,
        act: Activation,
        bias: bool,
        seed: u64,
        tol: f64,
    ) where
        A: Acc + Into<f64>,
        I: Input<A> + Copy,
        O: Output<A> + Copy,
        f64: Into<Probe<I>> + Into<Probe<O>> + Into<Probe<A>>,
    {
        let conv_i = |v: f64| -> I {
            let p: Probe<I> = v.into();
            p.0
        };
        let conv_o = |v: f64| -> O {
            let p: Probe<O> = v.into();
            p.0
        };
        let conv_a = |v: f64| -> A {
            let p: Probe<A> = v.into();
            p.0
        };
        // Stored shapes and row strides (in elements), with `pad` extra per row.
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        let (lda, ldb, ldc) = (ac + pad, bc + pad, n + pad);
        let a: Vec<I> = values(ar * lda, seed).into_iter().map(conv_i).collect();
        let b: Vec<I> = values(br * ldb, seed + 1).into_iter().map(conv_i).collect();
        let c0: Vec<f64> = values(m * ldc, seed + 2);
        let mut c: Vec<O> = c0.iter().map(|&v| if acc { conv_o(v) } else { conv_o(f64::NAN) }).collect();
        let before: Vec<f64> = c.iter().map(|v| v.widen().into()).collect();
        let bias_v: Vec<A> = values(n, seed + 3).into_iter().map(conv_a).collect();
        let amat = Mat {
            ptr: a.as_ptr(),
            rows: m,
            cols: k,
            rs: if ta { 1 } else { lda as isize },
            cs: if ta { lda as isize } else { 1 },
        };
        let bmat = Mat {
            ptr: b.as_ptr(),
            rows: k,
            cols: n,
            rs: if tb { 1 } else { ldb as isize },
            cs: if tb { ldb as isize } else { 1 },
        };
        let cmat = MatMut { ptr: c.as_mut_ptr(), rows: m, cols: n, rs: ldc as isize, cs: 1 };
        let epi = Epilogue { bias: bias.then_some(&bias_v[..]), activation: act };
        // SAFETY: the views are inside the vectors above.
        unsafe { gemm_with(kernel, amat, bmat, cmat, acc, &epi) };
        for i in 0..m {
            for j in 0..n {
                let (mut sum, mut mag) = (0.0f64, 0.0f64);
                for p in 0..k {
                    // SAFETY: in bounds.
                    let (x, y): (f64, f64) = unsafe { (amat.at(i, p).widen().into(), bmat.at(p, j).widen().into()) };
                    sum += x * y;
                    mag += (x * y).abs();
                }
                if acc {
                    let prev: f64 = c0[i * ldc + j];
                    let prev: f64 = conv_o(prev).widen().into();
                    sum += prev;
                    mag += prev.abs();
                }
                if bias {
                    let bj: f64 = bias_v[j].into();
                    sum += bj;
                    mag += bj.abs();
                }
                let want = act.apply_f64(sum);
                let got: f64 = c[i * ldc + j].widen().into();
                // Activations are 1-Lipschitz (GELU: ≤ 1.13), so the sum's error bound carries over.
                // Plus half of f16's subnormal step: below 2^-14 its resolution is absolute.
                let subnormal = if std::mem::size_of::<O>() == 2 && tol > 1e-4 { 2f64.powi(-25) } else { 0.0 };
                let bound = tol * (k as f64 + 2.0) * mag.max(1e-30) * 1.2 + tol * want.abs() + subnormal;
                assert!(
                    (got - want).abs() <= bound,
                    "{} {m}x{n}x{k} ta={ta} tb={tb} pad={pad} acc={acc} {act:?} bias={bias}: C[{i},{j}] = {got}, want {want} (bound {bound})",
                    kernel.name
                );
            }
        }
        // Padding between rows of C is never written.
        for i in 0..m {
            for j in n..ldc {
                let (v, was): (f64, f64) = (c[i * ldc + j].widen().into(), before[i * ldc + j]);
                assert!(v == was || (v.is_nan() && was.is_nan()), "padding of C written at [{i},{j}]: {was} -> {v}");
            }
        }
    }

    /// Converts an f64 test value into the element types.
    struct Probe<T>(T);
    impl From<f64> for Probe<f32> {
        fn from(v: f64) -> Self {
            Probe(v as f32)
        }
    }
    impl From<f64> for Probe<f64> {
        fn from(v: f64) -> Self {
            Probe(v)
        }
    }
    impl From<f64> for Probe<f16> {
        fn from(v: f64) -> Self {
            Probe(f16::from_f64(v))
        }
    }
    impl From<f64> for Probe<i8> {
        fn from(v: f64) -> Self {
            Probe((v * 127.0).round() as i8)
        }
    }
    impl From<f64> for Probe<i32> {
        fn from(v: f64) -> Self {
            Probe((v * 1000.0).round() as i32)
        }
    }
    impl From<f64> for Probe<bf16> {
        fn from(v: f64) -> Self {
            Probe(bf16::from_f64(v))
        }
    }

    const F32_EPS: f64 = 1.0 / (1u64 << 24) as f64;
    const F64_EPS: f64 = 1.0 / (1u64 << 53) as f64;

    fn shapes() -> impl Strategy<Value = (usize, usize, usize, bool, bool, usize, bool, u64)> {
        let dim = prop_oneof![1usize..5, 5usize..40, Just(97usize), 250usize..300];
        (
            dim.clone(),
            dim.clone(),
            prop_oneof![0usize..3, 3usize..40, 250usize..600],
            any::<bool>(),
            any::<bool>(),
            0usize..3,
            any::<bool>(),
            any::<u64>(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn f32_every_kernel((m, n, k, ta, tb, pad, acc, seed) in shapes()) {
            for kernel in kernels::all_f32_kernels() {
                check::<f32, f32, f32>(&kernel, m, n, k, ta, tb, pad, acc, Activation::None, false, seed, F32_EPS);
            }
        }

        #[test]
        fn f64_every_kernel((m, n, k, ta, tb, pad, acc, seed) in shapes()) {
            for kernel in kernels::all_f64_kernels() {
                check::<f64, f64, f64>(&kernel, m, n, k, ta, tb, pad, acc, Activation::None, false, seed, F64_EPS);
            }
        }

        #[test]
        fn int8_every_kernel((m, n, k, ta, tb, pad, acc, seed) in shapes(), bias in any::<bool>()) {
            for kernel in kernels::all_i32_kernels() {
                check::<i32, i8, i32>(&kernel, m, n, k, ta, tb, pad, acc, Activation::None, bias, seed, 0.0);
            }
        }

        #[test]
        fn half_inputs_and_outputs((m, n, k, ta, tb, pad, acc, seed) in shapes()) {
            let kernel = kernels::f32_kernel();
            // Inputs are exact in f32; the output rounding is relative to the result.
            check::<f32, f16, f32>(&kernel, m, n, k, ta, tb, pad, acc, Activation::None, false, seed, F32_EPS);
            check::<f32, bf16, f32>(&kernel, m, n, k, ta, tb, pad, acc, Activation::None, false, seed, F32_EPS);
            check::<f32, f16, f16>(&kernel, m, n, k, ta, tb, pad, acc, Activation::None, false, seed, 1.0 / 2048.0);
            check::<f32, bf16, bf16>(&kernel, m, n, k, ta, tb, pad, acc, Activation::None, false, seed, 1.0 / 256.0);
        }

        #[test]
        fn bf16_pair_kernel((m, n, k, ta, tb, pad, acc, seed) in shapes(), act in prop::sample::select(Activation::ALL.to_vec()), bias in any::<bool>()) {
            // Odd k pads the last pair; both storage orders of both operands take their own
            // packing loops.
            if let Some(pairs) = kernels::bf16_pair_kernel() {
                check::<f32, bf16, f32>(&pairs, m, n, k, ta, tb, pad, acc, Activation::None, false, seed, F32_EPS);
                check::<f32, bf16, bf16>(&pairs, m, n, k, ta, tb, pad, acc, act, bias, seed, 1.0 / 256.0);
            }
        }

        #[test]
        fn epilogues((m, n, k, ta, tb, pad, acc, seed) in shapes(), act in prop::sample::select(Activation::ALL.to_vec()), bias in any::<bool>()) {
            for kernel in kernels::all_f32_kernels() {
                check::<f32, f32, f32>(&kernel, m, n, k, ta, tb, pad, acc, act, bias, seed, 4.0 * F32_EPS);
            }
            check::<f32, bf16, bf16>(&kernels::f32_kernel(), m, n, k, ta, tb, pad, acc, act, bias, seed, 1.0 / 256.0);
            check::<f64, f64, f64>(&kernels::f64_kernel(), m, n, k, ta, tb, pad, acc, act, bias, seed, 4.0 * F64_EPS);
        }
    }

    #[test]
    fn large_threaded_product() {
        // Big enough to split across threads and to span several K and N blocks.
        let kernel = kernels::f32_kernel();
        check::<f32, f32, f32>(&kernel, 301, 1100, 700, false, false, 1, false, Activation::None, false, 7, F32_EPS);
        check::<f32, f32, f32>(&kernel, 1100, 77, 530, true, true, 0, true, Activation::Relu, true, 8, F32_EPS);
        check::<f32, bf16, bf16>(&kernel, 260, 600, 300, false, true, 0, true, Activation::Silu, true, 9, 1.0 / 256.0);
        if let Some(pairs) = kernels::bf16_pair_kernel() {
            // Threaded, several K blocks (of 512 for pairs) with an odd k; then few rows
            // against a row-major B (its panels packed, not read in place).
            check::<f32, bf16, f32>(
                &pairs,
                301,
                1100,
                1201,
                false,
                false,
                1,
                false,
                Activation::None,
                false,
                15,
                F32_EPS,
            );
            check::<f32, bf16, bf16>(
                &pairs,
                260,
                600,
                777,
                true,
                true,
                0,
                true,
                Activation::Silu,
                true,
                16,
                1.0 / 256.0,
            );
            check::<f32, bf16, f32>(&pairs, 20, 3001, 701, false, false, 1, true, Activation::Relu, true, 17, F32_EPS);
        }
        // A few rows against a wide B read in place, split across threads; with bias.
        check::<f32, f32, f32>(
            &kernel,
            20,
            3001,
            700,
            false,
            false,
            1,
            true,
            Activation::GeluTanh,
            true,
            13,
            4.0 * F32_EPS,
        );
        check::<f64, f64, f64>(
            &kernels::f64_kernel(),
            48,
            1500,
            900,
            true,
            false,
            0,
            false,
            Activation::None,
            false,
            14,
            F64_EPS,
        );
        // Threaded vector products, both orientations and both storage orders.
        for (ta, tb) in [(false, false), (true, true)] {
            check::<f32, f32, f32>(&kernel, 1, 3001, 900, ta, tb, 0, true, Activation::Relu, true, 10, F32_EPS);
            check::<f32, f32, f32>(&kernel, 3001, 1, 900, ta, tb, 0, false, Activation::Tanh, true, 11, F32_EPS);
            check::<f64, f64, f64>(
                &kernels::f64_kernel(),
                1,
                2100,
                1200,
                ta,
                tb,
                0,
                false,
                Activation::None,
                false,
                12,
                F64_EPS,
            );
        }
    }
}
