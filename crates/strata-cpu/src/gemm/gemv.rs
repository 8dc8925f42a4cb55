//! Matrix-vector products (`m == 1`, and `n == 1` by transposition): memory-bound, so they
//! skip packing and stream the matrix once, in whichever direction it is contiguous.
//!
//! - B row-major (`cs == 1`): `y[j0..j0+W] += Σ x[p] · B[p, j0..j0+W]` over rows `p`, four
//!   rows at a time, each row segment read sequentially.
//! - B column-major (`rs == 1`, e.g. a transposed weight `W[n, k]`): `y[j] = ⟨x, B[:, j]⟩`,
//!   four columns at a time, each with vector partial sums.
//! - anything else: a plain loop.
//!
//! The bodies are written once and compiled per instruction set (`#[target_feature]` wrappers
//! around `#[inline(always)]` code), so the compiler vectorizes them for AVX-512 or AVX2.

use super::{Acc, Epilogue, Input, Mat, MatMut, Output};

/// Output columns per block on the row-major path (16 KiB of f32: stays in L1).
const ROW_BLOCK: usize = 4096;
/// Partial sums per column on the column-major path.
const LANES: usize = 16;

/// `c = a·b (+ c)`, epilogue, for `a` of one row. Threads split the columns.
///
/// # Safety
/// As for [`super::gemm`].
pub(super) unsafe fn gemv<A: Acc, IA: Input<A>, IB: Input<A>, O: Output<A>>(
    a: Mat<IA>,
    b: Mat<IB>,
    c: MatMut<O>,
    accumulate: bool,
    epilogue: &Epilogue<'_, A>,
) {
    let (k, n) = (b.rows, b.cols);
    debug_assert_eq!(a.rows, 1);
    let x: Vec<A> = (0..k).map(|p| unsafe { a.at(0, p) }.widen()).collect();
    let threads = rayon::current_num_threads().min(n * k / (1 << 18)).max(1);
    let bound = |t: usize| if t == threads { n } else { n * t / threads / LANES * LANES };
    let parts: Vec<(usize, usize)> = (0..threads).map(|t| (bound(t), bound(t + 1))).filter(|(s, e)| e > s).collect();
    let run = |(s, e): (usize, usize)| {
        let mut y = vec![A::default(); e - s];
        // SAFETY: the columns s..e are inside B.
        unsafe { dispatch(&x, b.block(0, s, k, e - s), &mut y) };
        for (j, v) in y.into_iter().enumerate() {
            // SAFETY: (0, s + j) is inside C.
            unsafe {
                let p = c.at(0, s + j);
                let v = if accumulate { A::add((*p).widen(), v) } else { v };
                *p = O::narrow(epilogue.apply(v, s + j));
            }
        }
    };
    if parts.len() == 1 {
        run(parts[0]);
    } else {
        rayon::scope(|scope| {
            for &part in &parts {
                let run = &run;
                scope.spawn(move |_| run(part));
            }
        });
    }
}

/// `y = x·b` with the best instruction set available.
unsafe fn dispatch<A: Acc, I: Input<A>>(x: &[A], b: Mat<I>, y: &mut [A]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { body_avx512(x, b, y) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { body_avx2(x, b, y) };
        }
    }
    // SAFETY: forwarded.
    unsafe { body(x, b, y) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn body_avx512<A: Acc, I: Input<A>>(x: &[A], b: Mat<I>, y: &mut [A]) {
    // SAFETY: forwarded.
    unsafe { body(x, b, y) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn body_avx2<A: Acc, I: Input<A>>(x: &[A], b: Mat<I>, y: &mut [A]) {
    // SAFETY: forwarded.
    unsafe { body(x, b, y) }
}

#[inline(always)]
unsafe fn body<A: Acc, I: Input<A>>(x: &[A], b: Mat<I>, y: &mut [A]) {
    let (k, n) = (b.rows, b.cols);
    if b.cs == 1 {
        // Whole row segments, four rows at a time: four sequential streams the prefetcher
        // follows, against a block of `y` that stays in L1.
        for (s, ys) in y.chunks_mut(ROW_BLOCK).enumerate() {
            let w = ys.len();
            ys.fill(A::default());
            // SAFETY: row p, columns s*ROW_BLOCK.. +w are inside B.
            let row =
                |p: usize| unsafe { std::slice::from_raw_parts(b.ptr.offset(p as isize * b.rs).add(s * ROW_BLOCK), w) };
            let mut p = 0;
            while p + 4 <= k {
                let (r0, r1, r2, r3) = (row(p), row(p + 1), row(p + 2), row(p + 3));
                let (x0, x1, x2, x3) = (x[p], x[p + 1], x[p + 2], x[p + 3]);
                for j in 0..w {
                    let t = A::mul_add(x0, r0[j].widen(), ys[j]);
                    let u = A::mul_add(
                        x1,
                        r1[j].widen(),
                        A::mul_add(x2, r2[j].widen(), A::mul_add(x3, r3[j].widen(), A::default())),
                    );
                    ys[j] = A::add(t, u);
                }
                p += 4;
            }
            for p in p..k {
                let (r, xp) = (row(p), x[p]);
                for j in 0..w {
                    ys[j] = A::mul_add(xp, r[j].widen(), ys[j]);
                }
            }
        }
    } else if b.rs == 1 {
        let mut j = 0;
        while j < n {
            let cols = (n - j).min(4);
            let mut acc = [[A::default(); LANES]; 4];
            let col = |c: usize| {
                // SAFETY: column j + c is inside B and has k contiguous elements.
                unsafe { std::slice::from_raw_parts(b.ptr.offset((j + c.min(cols - 1)) as isize * b.cs), k) }
            };
            let cs = [col(0), col(1), col(2), col(3)];
            let full = k / LANES * LANES;
            for p in (0..full).step_by(LANES) {
                let xs = &x[p..p + LANES];
                for (acc, c) in acc.iter_mut().zip(&cs) {
                    for ((a, &xv), &bv) in acc.iter_mut().zip(xs).zip(&c[p..p + LANES]) {
                        *a = A::mul_add(xv, bv.widen(), *a);
                    }
                }
            }
            for (ci, (acc, c)) in acc.iter().zip(&cs).enumerate().take(cols) {
                let mut sum = acc.iter().fold(A::default(), |s, &v| A::add(s, v));
                for p in full..k {
                    sum = A::mul_add(x[p], c[p].widen(), sum);
                }
                y[j + ci] = sum;
            }
            j += cols;
        }
    } else {
        for (j, yj) in y.iter_mut().enumerate() {
            *yj = (0..k).fold(A::default(), |s, p| A::mul_add(x[p], unsafe { b.at(p, j) }.widen(), s));
        }
    }
}
