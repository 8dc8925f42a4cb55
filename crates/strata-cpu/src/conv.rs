//! Convolution on the CPU: im2col in blocks of output rows, each block one GEMM per group.
//!
//! The patch matrix of a block (`R` output positions × `kernel · c_in/groups`) is built from
//! the channels-last input with one contiguous copy per kernel tap, and multiplied by the
//! weight viewed as a `(kernel · c_in/groups) × c_out` matrix, landing directly in the output
//! rows. Blocks keep the patch matrix near 1 MiB (in L2) instead of materializing all of it.
//! Depthwise-style groups with one input channel use a direct loop vectorized over channels.
//! A transposed convolution runs as the forward convolution it is equivalent to: the input
//! dilated by the stride, padded by `span − 1 − pad`, and the kernel flipped with its channel
//! roles exchanged.

use bytemuck::Pod;
use half::{bf16, f16};
use rayon::prelude::*;
use strata_core::kernel::Conv;
use strata_core::{DType, Result};

use crate::gemm::{self, Acc, Epilogue, Input, Mat, MatMut, Output};
use crate::strided::{gather, scatter};
use crate::{TensorMut, TensorRef};

/// Runs a [`Conv`]: `out = conv(input, weight)` (or its transpose).
///
/// Errors (before writing) if the shapes or types do not fit the descriptor, or an operand
/// reaches outside its buffer.
pub fn conv(desc: &Conv, input: TensorRef<'_>, weight: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    desc.validate_call(&input, &weight, &out)?;
    match input.dtype {
        DType::F32 => run::<f32, f32>(desc, input, weight, out),
        DType::F16 => run::<f32, f16>(desc, input, weight, out),
        DType::BF16 => run::<f32, bf16>(desc, input, weight, out),
        DType::F64 => run::<f64, f64>(desc, input, weight, out),
        _ => unreachable!("validated"),
    }
}

/// A forward convolution in normalized form: 3 spatial axes (unused ones of size 1), signed
/// low padding (negative crops), explicit output size.
struct Plan {
    in_size: [usize; 3],
    out_size: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    dilation: [usize; 3],
    pad_lo: [isize; 3],
    c_in: usize,
    c_out: usize,
    groups: usize,
}

fn run<A, T>(desc: &Conv, input: TensorRef<'_>, weight: TensorRef<'_>, out: TensorMut<'_>) -> Result<()>
where
    A: Acc + std::ops::Add<Output = A> + std::ops::Mul<Output = A>,
    T: Pod + Input<A> + Output<A>,
{
    let s = desc.spatial;
    let in_shape = input.layout.shape();
    let w_shape = weight.layout.shape();
    let out_shape = out.layout.shape().to_vec();
    let x: Vec<A> = gather(input.buffer.typed::<T>(), input.layout, |v: T| Input::widen(v));
    let w: Vec<A> = gather(weight.buffer.typed::<T>(), weight.layout, |v: T| Input::widen(v));
    let three = |v: &[usize]| {
        let mut a = [1usize; 3];
        a[..s].copy_from_slice(&v[..s]);
        a
    };
    let kernel = three(w_shape);
    let (in_size, out_size) = (three(&in_shape[1..]), three(&out_shape[1..]));
    let (c_in_x, c_out_y) = (in_shape[s + 1], out_shape[s + 1]);
    let mut y = vec![A::default(); out.layout.numel()];
    if y.is_empty() {
        return Ok(());
    }
    let span = |ax: usize| desc.dilation[ax] * (kernel[ax] - 1) + 1;
    if !desc.transposed {
        let mut pad_lo = [0isize; 3];
        for ax in 0..s {
            pad_lo[ax] = desc.padding[ax].0 as isize;
        }
        let mut stride = [1; 3];
        stride[..s].copy_from_slice(&desc.stride[..s]);
        let mut dilation = [1; 3];
        dilation[..s].copy_from_slice(&desc.dilation[..s]);
        let plan = Plan {
            in_size,
            out_size,
            kernel,
            stride,
            dilation,
            pad_lo,
            c_in: c_in_x,
            c_out: c_out_y,
            groups: desc.groups,
        };
        forward(&plan, &x, &w, &mut y);
    } else {
        // Dilate the input by the stride (zeros between rows), flip the kernel, exchange the
        // channel roles: weight [k, c_out/g, c_in] becomes [k', c_in/g, c_out].
        let mut dil_size = [1usize; 3];
        let mut pad_lo = [0isize; 3];
        let mut dilation = [1; 3];
        for ax in 0..s {
            dil_size[ax] = (in_size[ax] - 1) * desc.stride[ax] + 1;
            pad_lo[ax] = span(ax) as isize - 1 - desc.padding[ax].0 as isize;
            dilation[ax] = desc.dilation[ax];
        }
        let xd = dilate(&x, in_shape[0], in_size, dil_size, desc.stride, c_in_x);
        let (g, cog, cig) = (desc.groups, c_out_y / desc.groups, c_in_x / desc.groups);
        let taps = kernel.iter().product::<usize>();
        let mut wf = vec![A::default(); taps * cig * c_out_y];
        for t in 0..taps {
            // Flipping every spatial axis reverses the tap order.
            let tf = taps - 1 - t;
            for co in 0..c_out_y {
                let (gi, col) = (co / cog, co % cog);
                for ci in 0..cig {
                    wf[(tf * cig + ci) * c_out_y + co] = w[(t * cog + col) * c_in_x + gi * cig + ci];
                }
            }
        }
        let plan = Plan {
            in_size: dil_size,
            out_size,
            kernel,
            stride: [1; 3],
            dilation,
            pad_lo,
            c_in: c_in_x,
            c_out: c_out_y,
            groups: g,
        };
        forward(&plan, &xd, &wf, &mut y);
    }
    scatter(&y, out.buffer.typed_mut::<T>(), out.layout, T::narrow);
    Ok(())
}

/// `x` with `stride − 1` zero rows inserted between rows along each spatial axis.
fn dilate<A: Acc>(x: &[A], batch: usize, size: [usize; 3], dil: [usize; 3], stride: [usize; 3], c: usize) -> Vec<A> {
    let mut out = vec![A::default(); batch * dil.iter().product::<usize>() * c];
    for b in 0..batch {
        for i0 in 0..size[0] {
            for i1 in 0..size[1] {
                for i2 in 0..size[2] {
                    let src = (((b * size[0] + i0) * size[1] + i1) * size[2] + i2) * c;
                    let (d0, d1, d2) = (i0 * stride[0], i1 * stride[1], i2 * stride[2]);
                    let dst = (((b * dil[0] + d0) * dil[1] + d1) * dil[2] + d2) * c;
                    out[dst..dst + c].copy_from_slice(&x[src..src + c]);
                }
            }
        }
    }
    out
}

/// Target size of one block's patch matrix, in elements (about 1 MiB of f32).
const BLOCK_ELEMS: usize = 1 << 18;

/// The forward convolution of a plan: `x` dense `[batch, *in_size, c_in]`, `w` dense
/// `[*kernel, c_in/groups, c_out]`, into dense `y` `[batch, *out_size, c_out]`.
fn forward<A>(p: &Plan, x: &[A], w: &[A], y: &mut [A])
where
    A: Acc + std::ops::Add<Output = A> + std::ops::Mul<Output = A>,
{
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let taps: usize = p.kernel.iter().product();
    let row_len = taps * cig;
    if cig == 1 && p.groups > 1 {
        return depthwise(p, x, w, y);
    }
    let block = (BLOCK_ELEMS / row_len.max(1)).clamp(16, 4096);
    y.par_chunks_mut(block * p.c_out).enumerate().for_each(|(bi, yb)| {
        let r0 = bi * block;
        let nrows = yb.len() / p.c_out;
        let mut patches = vec![A::default(); nrows * row_len];
        for g in 0..p.groups {
            for r in 0..nrows {
                fill_row(p, x, r0 + r, g * cig, cig, &mut patches[r * row_len..(r + 1) * row_len]);
            }
            let a = Mat { ptr: patches.as_ptr(), rows: nrows, cols: row_len, rs: row_len as isize, cs: 1 };
            // SAFETY: the weight columns of group g, and the output columns of group g in
            // this block, are inside `w` and `yb`.
            unsafe {
                let b = Mat { ptr: w.as_ptr().add(g * cog), rows: row_len, cols: cog, rs: p.c_out as isize, cs: 1 };
                let c =
                    MatMut { ptr: yb.as_mut_ptr().add(g * cog), rows: nrows, cols: cog, rs: p.c_out as isize, cs: 1 };
                gemm::gemm::<A, A, A, A>(a, b, c, false, &Epilogue { bias: None, activation: Default::default() });
            }
        }
    });
}

/// The input positions an output row (flattened `[batch, *out_size]`) reads, tap by tap: for
/// each tap, the buffer offset of its `c_in` channels, or `None` where it falls in the padding.
fn taps_of(p: &Plan, row: usize, mut f: impl FnMut(usize, Option<usize>)) {
    let [o0, o1, o2] = p.out_size;
    let (b, rem) = (row / (o0 * o1 * o2), row % (o0 * o1 * o2));
    let out = [rem / (o1 * o2), rem / o2 % o1, rem % o2];
    let mut t = 0;
    for k0 in 0..p.kernel[0] {
        for k1 in 0..p.kernel[1] {
            for k2 in 0..p.kernel[2] {
                let k = [k0, k1, k2];
                let mut pos = [0usize; 3];
                let mut inside = true;
                for ax in 0..3 {
                    let i = (out[ax] * p.stride[ax] + k[ax] * p.dilation[ax]) as isize - p.pad_lo[ax];
                    inside &= i >= 0 && (i as usize) < p.in_size[ax];
                    pos[ax] = i.max(0) as usize;
                }
                let offset = (((b * p.in_size[0] + pos[0]) * p.in_size[1] + pos[1]) * p.in_size[2] + pos[2]) * p.c_in;
                f(t, inside.then_some(offset));
                t += 1;
            }
        }
    }
}

/// One row of the patch matrix: for each tap, the `cig` channels of group starting at `c0`.
fn fill_row<A: Acc>(p: &Plan, x: &[A], row: usize, c0: usize, cig: usize, dst: &mut [A]) {
    taps_of(p, row, |t, offset| {
        let d = &mut dst[t * cig..(t + 1) * cig];
        match offset {
            Some(o) => d.copy_from_slice(&x[o + c0..o + c0 + cig]),
            None => d.fill(A::default()),
        }
    });
}

/// Groups with one input channel each (depthwise, with any channel multiplier): a direct
/// loop over taps, vectorized over output channels.
fn depthwise<A>(p: &Plan, x: &[A], w: &[A], y: &mut [A])
where
    A: Acc + std::ops::Add<Output = A> + std::ops::Mul<Output = A>,
{
    let cog = p.c_out / p.groups;
    // Each output channel's input channel, spread once so the inner loop is a plain FMA.
    y.par_chunks_mut(p.c_out).enumerate().for_each(|(row, yr)| {
        let mut spread = vec![A::default(); p.c_out];
        taps_of(p, row, |t, offset| {
            if let Some(o) = offset {
                let xs = &x[o..o + p.c_in];
                for (co, s) in spread.iter_mut().enumerate() {
                    *s = xs[co / cog];
                }
                let wt = &w[t * p.c_out..(t + 1) * p.c_out];
                for ((acc, &s), &wv) in yr.iter_mut().zip(&spread).zip(wt) {
                    *acc = *acc + s * wv;
                }
            }
        });
    });
}

/// A dense convolution evaluated term by term in f64 — the reference the tests compare with.
#[cfg(test)]
pub(crate) fn reference(desc: &Conv, x: &[f64], xs: &[usize], w: &[f64], ws: &[usize]) -> (Vec<f64>, Vec<usize>) {
    let os = desc.output_shape(xs, ws).unwrap();
    let s = desc.spatial;
    let mut y = vec![0.0; os.iter().product()];
    let (c_in, c_out) = (xs[s + 1], os[s + 1]);
    let strides = |shape: &[usize]| -> Vec<usize> {
        let mut st = vec![1; shape.len()];
        for i in (0..shape.len() - 1).rev() {
            st[i] = st[i + 1] * shape[i + 1];
        }
        st
    };
    let (xst, wst, yst) = (strides(xs), strides(ws), strides(&os));
    let taps: usize = ws[..s].iter().product();
    // Forward: y[b, o, co] += x[b, o*st + k*d - p, ci] w[k, ci_l, co]. Transposed: the same
    // terms with x and y exchanged (x plays the output's role), which is its adjoint.
    let (fwd_in, fwd_out) = if desc.transposed { (&os[..], xs) } else { (xs, &os[..]) };
    let (cin_f, cout_f) = if desc.transposed { (c_out, c_in) } else { (c_in, c_out) };
    let (cig, cog) = (cin_f / desc.groups, cout_f / desc.groups);
    let outer: usize = fwd_out[..s + 1].iter().product();
    for o in 0..outer {
        let mut oi = vec![0; s + 1];
        let mut r = o;
        for ax in (0..=s).rev() {
            oi[ax] = r % fwd_out[ax];
            r /= fwd_out[ax];
        }
        for t in 0..taps {
            let mut k = vec![0; s];
            let mut r = t;
            for ax in (0..s).rev() {
                k[ax] = r % ws[ax];
                r /= ws[ax];
            }
            let mut ii = vec![oi[0]];
            let mut inside = true;
            for ax in 0..s {
                let i =
                    (oi[ax + 1] * desc.stride[ax] + k[ax] * desc.dilation[ax]) as isize - desc.padding[ax].0 as isize;
                inside &= i >= 0 && (i as usize) < fwd_in[ax + 1];
                ii.push(i.max(0) as usize);
            }
            if !inside {
                continue;
            }
            for co in 0..cout_f {
                let g = co / cog;
                for cl in 0..cig {
                    let ci = g * cig + cl;
                    let wi: usize =
                        k.iter().zip(&wst).map(|(a, b)| a * b).sum::<usize>() + cl * wst[s] + co * wst[s + 1];
                    let fin: usize = ii.iter().zip(&xst).map(|(a, b)| a * b).sum::<usize>();
                    let fout: usize = oi.iter().zip(&yst).map(|(a, b)| a * b).sum::<usize>();
                    if desc.transposed {
                        // Forward map fwd_in (= y here) -> fwd_out (= x here): y[ii, ci] += x[oi, co] w.
                        let yi = ii.iter().zip(&yst).map(|(a, b)| a * b).sum::<usize>() + ci;
                        let xi = oi.iter().zip(&xst).map(|(a, b)| a * b).sum::<usize>() + co;
                        y[yi] += x[xi] * w[wi];
                    } else {
                        y[fout + co] += x[fin + ci] * w[wi];
                    }
                }
            }
        }
    }
    (y, os)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBuffer;
    use proptest::prelude::*;
    use strata_core::kernel::Layout;

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

    /// Runs `desc` through the public entry point in f32 and f64 and compares with the f64
    /// reference; the output buffer starts as NaN.
    fn check(desc: &Conv, xs: &[usize], ws: &[usize], seed: u64) {
        let x = values(xs.iter().product(), seed);
        let w = values(ws.iter().product(), seed + 1);
        let (want, os) = reference(desc, &x, xs, &w, ws);
        let (lx, lw, ly) = (Layout::contiguous(xs), Layout::contiguous(ws), Layout::contiguous(&os));
        // f64 to within rounding; f32 with a bound from the number of terms.
        let terms = (ws[..desc.spatial].iter().product::<usize>() * ws[desc.spatial].max(ws[desc.spatial + 1])) as f64;
        {
            let (bx, bw) = (CpuBuffer::from_slice(&x).unwrap(), CpuBuffer::from_slice(&w).unwrap());
            let mut by = CpuBuffer::from_slice(&vec![f64::NAN; want.len()]).unwrap();
            conv(
                desc,
                TensorRef::new(DType::F64, &bx, &lx),
                TensorRef::new(DType::F64, &bw, &lw),
                TensorMut::new(DType::F64, &mut by, &ly),
            )
            .unwrap();
            for (i, (&g, &r)) in by.typed::<f64>().iter().zip(&want).enumerate() {
                assert!((g - r).abs() <= 1e-13 * terms, "{desc:?} x{xs:?} w{ws:?}: f64 y[{i}] = {g}, want {r}");
            }
        }
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (bx, bw) = (CpuBuffer::from_slice(&xf).unwrap(), CpuBuffer::from_slice(&wf).unwrap());
        let mut by = CpuBuffer::from_slice(&vec![f32::NAN; want.len()]).unwrap();
        conv(
            desc,
            TensorRef::new(DType::F32, &bx, &lx),
            TensorRef::new(DType::F32, &bw, &lw),
            TensorMut::new(DType::F32, &mut by, &ly),
        )
        .unwrap();
        for (i, (&g, &r)) in by.typed::<f32>().iter().zip(&want).enumerate() {
            assert!((g as f64 - r).abs() <= 4e-7 * terms, "{desc:?} x{xs:?} w{ws:?}: f32 y[{i}] = {g}, want {r}");
        }
    }

    fn case() -> impl Strategy<Value = (Conv, Vec<usize>, Vec<usize>, u64)> {
        (
            1usize..=3,
            1usize..=3,
            prop::bool::ANY,
            1usize..=2,
            1usize..=2,
            0usize..=2,
            1usize..=3,
            1usize..=4,
            any::<u64>(),
        )
            .prop_flat_map(|(spatial, groups, transposed, stride, dilation, pad, cpg_in, cpg_out, seed)| {
                let dims = prop::collection::vec((1usize..=3, 1usize..=7), spatial);
                (dims, 1usize..=2).prop_filter_map("a kernel that fits", move |(dims, batch)| {
                    let mut c = Conv::new(spatial).groups(groups);
                    for ax in 0..spatial {
                        c.stride[ax] = stride;
                        c.dilation[ax] = dilation;
                        c.padding[ax] = (pad, (pad + ax) % 3);
                        if transposed {
                            c.transposed = true;
                            c.output_padding[ax] = (ax + 1) % stride.max(dilation);
                        }
                    }
                    let kernel: Vec<usize> = dims.iter().map(|d| d.0).collect();
                    let mut xs = vec![batch];
                    xs.extend(dims.iter().map(|d| d.1));
                    let (c_in, c_out) = (groups * cpg_in, groups * cpg_out);
                    xs.push(c_in);
                    let mut ws = kernel.clone();
                    if transposed {
                        ws.extend([c_out / groups, c_in]);
                    } else {
                        ws.extend([c_in / groups, c_out]);
                    }
                    c.output_shape(&xs, &ws).ok().map(|_| (c, xs, ws, seed))
                })
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn matches_the_reference((desc, xs, ws, seed) in case()) {
            check(&desc, &xs, &ws, seed);
        }
    }

    #[test]
    fn transposed_is_the_adjoint() {
        // <conv(x, w), y> = <x, conv_transpose(y, w)> for the same descriptor.
        for (stride, pad, groups, op) in [(1, 0, 1, 0), (2, 1, 1, 1), (3, 2, 2, 2), (2, 0, 4, 0)] {
            let fwd = Conv::new_2d([stride, stride], [pad, pad]).groups(groups);
            let xs = [2, 9, 8, 4];
            let ws = [3, 3, 4 / groups, 8];
            let ys = fwd.output_shape(&xs, &ws).unwrap();
            let mut tr = fwd;
            tr.transposed = true;
            tr.output_padding = [op.min(stride - 1), 0, 0];
            let x = values(xs.iter().product(), 1);
            let w = values(ws.iter().product(), 2);
            let y = values(ys.iter().product(), 3);
            let (cx, _) = reference(&fwd, &x, &xs, &w, &ws);
            let (ty, ts) = reference(&tr, &y, &ys, &w, &ws);
            if ts != xs {
                continue; // output padding picked a different input size
            }
            let lhs: f64 = cx.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&ty).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
                "stride {stride} pad {pad} groups {groups}: {lhs} vs {rhs}"
            );
            check(&tr, &ys, &ws, 4);
        }
    }

    #[test]
    fn half_precision_and_strided_operands() {
        // NHWC input viewed through a transposed layout, weights in bf16, output f16 strided.
        let desc = Conv::new_2d([1, 1], [1, 1]);
        let (xs, ws) = ([1usize, 5, 6, 3], [3usize, 3, 3, 4]);
        let x = values(90, 5);
        let w = values(108, 6);
        let (want, os) = reference(&desc, &x, &xs, &w, &ws);
        for dtype in [DType::F16, DType::BF16] {
            let enc = |v: &[f64]| -> CpuBuffer {
                match dtype {
                    DType::F16 => {
                        CpuBuffer::from_slice(&v.iter().map(|&v| f16::from_f64(v)).collect::<Vec<_>>()).unwrap()
                    }
                    _ => CpuBuffer::from_slice(&v.iter().map(|&v| bf16::from_f64(v)).collect::<Vec<_>>()).unwrap(),
                }
            };
            let mut by = enc(&vec![f64::NAN; want.len()]);
            conv(
                &desc,
                TensorRef::new(dtype, &enc(&x), &Layout::contiguous(&xs)),
                TensorRef::new(dtype, &enc(&w), &Layout::contiguous(&ws)),
                TensorMut::new(dtype, &mut by, &Layout::contiguous(&os)),
            )
            .unwrap();
            let tol = if dtype == DType::F16 { 2e-2 } else { 1e-1 };
            let got: Vec<f64> = match dtype {
                DType::F16 => by.typed::<f16>().iter().map(|v| v.to_f64()).collect(),
                _ => by.typed::<bf16>().iter().map(|v| v.to_f64()).collect(),
            };
            for (g, r) in got.iter().zip(&want) {
                assert!((g - r).abs() <= tol, "{dtype}: {g} vs {r}");
            }
        }
        let e = conv(
            &desc,
            TensorRef::new(DType::F32, &CpuBuffer::zeros(4 * 90).unwrap(), &Layout::contiguous(&xs)),
            TensorRef::new(DType::F32, &CpuBuffer::zeros(4 * 108).unwrap(), &Layout::contiguous(&[3, 3, 2, 4])),
            TensorMut::new(DType::F32, &mut CpuBuffer::zeros(4 * 120).unwrap(), &Layout::contiguous(&os)),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3 channels") && e.contains("takes 2"), "{e}");
    }
}
