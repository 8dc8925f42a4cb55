//! `matmul2d` through its public descriptor: batches (including broadcast batch axes),
//! transposes, every type pair, modes and epilogues against an f64 reference; and every kind
//! of bad call rejected with a message that names the problem, leaving the output untouched.

#![allow(clippy::needless_range_loop)] // index arithmetic mirrors the math
use half::{bf16, f16};
use strata_core::formats::{F8E4M3, F8E5M2};
use strata_core::kernel::{Activation, Epilogue, Layout, Matmul2d, MatmulMode, Scales};
use strata_core::{DType, Error};
use strata_cpu::{CpuBuffer, TensorMut, TensorRef, matmul2d};

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

/// A buffer of `n` values of `dtype` made from f64s, and the values it actually holds.
fn buffer(dtype: DType, v: &[f64]) -> (CpuBuffer, Vec<f64>) {
    match dtype {
        DType::F32 => {
            let x: Vec<f32> = v.iter().map(|&v| v as f32).collect();
            (CpuBuffer::from_slice(&x).unwrap(), x.iter().map(|&v| v as f64).collect())
        }
        DType::F64 => (CpuBuffer::from_slice(v).unwrap(), v.to_vec()),
        DType::F16 => {
            let x: Vec<f16> = v.iter().map(|&v| f16::from_f64(v)).collect();
            (CpuBuffer::from_slice(&x).unwrap(), x.iter().map(|v| v.to_f64()).collect())
        }
        DType::BF16 => {
            let x: Vec<bf16> = v.iter().map(|&v| bf16::from_f64(v)).collect();
            (CpuBuffer::from_slice(&x).unwrap(), x.iter().map(|v| v.to_f64()).collect())
        }
        DType::I8 => {
            let x: Vec<i8> = v.iter().map(|&v| (v * 100.0) as i8).collect();
            (CpuBuffer::from_slice(&x).unwrap(), x.iter().map(|&v| v as f64).collect())
        }
        DType::I32 => {
            let x: Vec<i32> = v.iter().map(|&v| (v * 1000.0) as i32).collect();
            (CpuBuffer::from_slice(&x).unwrap(), x.iter().map(|&v| v as f64).collect())
        }
        // fp8 over several binades: [-1, 1) times 4.
        DType::F8E4M3 => {
            let x: Vec<u8> = v.iter().map(|&v| F8E4M3::from_f32(4.0 * v as f32).to_bits()).collect();
            (CpuBuffer::from_slice(&x).unwrap(), x.iter().map(|&b| F8E4M3::from_bits(b).to_f32() as f64).collect())
        }
        DType::F8E5M2 => {
            let x: Vec<u8> = v.iter().map(|&v| F8E5M2::from_f32(4.0 * v as f32).to_bits()).collect();
            (CpuBuffer::from_slice(&x).unwrap(), x.iter().map(|&b| F8E5M2::from_bits(b).to_f32() as f64).collect())
        }
        _ => unreachable!(),
    }
}

fn read(dtype: DType, b: &CpuBuffer) -> Vec<f64> {
    match dtype {
        DType::F32 => b.typed::<f32>().iter().map(|&v| v as f64).collect(),
        DType::F64 => b.typed::<f64>().to_vec(),
        DType::F16 => b.typed::<f16>().iter().map(|v| v.to_f64()).collect(),
        DType::BF16 => b.typed::<bf16>().iter().map(|v| v.to_f64()).collect(),
        DType::I32 => b.typed::<i32>().iter().map(|&v| v as f64).collect(),
        _ => unreachable!(),
    }
}

/// Runs one batched product and checks it. `batch` is the output's batch shape; the right
/// operand is broadcast over the first batch axis (stride 0) when `broadcast` is set.
#[allow(clippy::too_many_arguments)]
fn case(
    inp: DType,
    out: DType,
    batch: &[usize],
    m: usize,
    n: usize,
    k: usize,
    tl: bool,
    tr: bool,
    mode: MatmulMode,
    epilogue: Epilogue,
    broadcast: bool,
    seed: u64,
) {
    let b: usize = batch.iter().product();
    let mut shape_l = batch.to_vec();
    shape_l.extend(if tl { [k, m] } else { [m, k] });
    let mut shape_r = batch.to_vec();
    shape_r.extend(if tr { [n, k] } else { [k, n] });
    let mut shape_o = batch.to_vec();
    shape_o.extend([m, n]);
    let l_layout = Layout::contiguous(&shape_l);
    let r_layout = if broadcast && !batch.is_empty() {
        // Only one matrix per leading batch index is stored: stride 0 on axis 0.
        let mut inner = shape_r.clone();
        inner[0] = 1;
        let c = Layout::contiguous(&inner);
        let mut strides = c.strides().to_vec();
        strides[0] = 0;
        Layout::new(&shape_r, &strides, 0).unwrap()
    } else {
        Layout::contiguous(&shape_r)
    };
    let o_layout = Layout::contiguous(&shape_o);
    let r_len = r_layout.span().map_or(0, |(_, hi)| hi as usize + 1);
    let (lb, lv) = buffer(inp, &values(b * m * k, seed));
    let (rb, rv) = buffer(inp, &values(r_len, seed + 1));
    let init = values(b * m * n, seed + 2);
    let accumulate = mode == MatmulMode::MultiplyAccumulate;
    let poison: Vec<f64> = if accumulate { init.clone() } else { vec![f64::NAN; b * m * n] };
    let (mut ob, ov) =
        if out == DType::I32 && !accumulate { buffer(out, &vec![-7.0; b * m * n]) } else { buffer(out, &poison) };
    let bias_layout = Layout::contiguous(&[n]);
    let (bb, bv) = buffer(out, &values(n, seed + 3));
    let desc = Matmul2d::new(m, n, k).transpose_left(tl).transpose_right(tr).mode(mode).epilogue(epilogue);
    matmul2d(
        &desc,
        TensorRef::new(inp, &lb, &l_layout),
        TensorRef::new(inp, &rb, &r_layout),
        epilogue.has_bias().then(|| TensorRef::new(out, &bb, &bias_layout)),
        None,
        TensorMut::new(out, &mut ob, &o_layout),
    )
    .unwrap();
    let got = read(out, &ob);
    let eps = match out {
        DType::F64 => 2f64.powi(-50),
        DType::F32 => 2f64.powi(-22),
        DType::F16 => 2f64.powi(-10),
        DType::BF16 => 2f64.powi(-7),
        _ => 0.0,
    };
    let mut idx = vec![0usize; batch.len()];
    for bi in 0..b {
        let mut rem = bi;
        for (ax, &d) in batch.iter().enumerate().rev() {
            idx[ax] = rem % d;
            rem /= d;
        }
        for i in 0..m {
            for j in 0..n {
                let (mut sum, mut mag) = (0.0, 0.0);
                for p in 0..k {
                    let mut li = idx.clone();
                    li.extend(if tl { [p, i] } else { [i, p] });
                    let mut ri = idx.clone();
                    ri.extend(if tr { [j, p] } else { [p, j] });
                    let x = lv[l_layout.position(&li) as usize] * rv[r_layout.position(&ri) as usize];
                    sum += x;
                    mag += x.abs();
                }
                let o = bi * m * n + i * n + j;
                if accumulate {
                    sum += ov[o];
                    mag += ov[o].abs();
                }
                if epilogue.has_bias() {
                    sum += bv[j];
                    mag += bv[j].abs();
                }
                let want = match epilogue.activation() {
                    Activation::Relu => sum.max(0.0),
                    Activation::Tanh => sum.tanh(),
                    Activation::None => sum,
                    a => panic!("untested activation {a:?}"),
                };
                let bound = eps * (mag + want.abs()) * (k as f64 + 2.0).sqrt() + 1e-300;
                assert!(
                    (got[o] - want).abs() <= bound,
                    "{inp}->{out} batch {batch:?} {m}x{n}x{k} tl={tl} tr={tr} {mode:?} {epilogue:?}: [{bi},{i},{j}] = {}, want {want}",
                    got[o]
                );
            }
        }
    }
}

#[test]
fn every_type_pair() {
    let pairs = [
        (DType::F32, DType::F32),
        (DType::F64, DType::F64),
        (DType::F16, DType::F16),
        (DType::F16, DType::F32),
        (DType::BF16, DType::BF16),
        (DType::BF16, DType::F32),
        (DType::I8, DType::I32),
    ];
    for (s, (inp, out)) in pairs.into_iter().enumerate() {
        for (m, n, k) in [(1, 1, 1), (7, 33, 65), (1, 70, 300), (70, 1, 300), (40, 50, 0)] {
            for mode in [MatmulMode::Multiply, MatmulMode::MultiplyAccumulate] {
                let epi =
                    if inp == DType::I8 { Epilogue::Bias(Activation::None) } else { Epilogue::Bias(Activation::Relu) };
                case(inp, out, &[], m, n, k, false, true, mode, epi, false, s as u64 * 31 + m as u64);
            }
        }
    }
}

/// fp8 operands (either format on either side) with per-tensor or per-row scales, every
/// transpose, accumulation and a bias, into f32, f16 and bf16, against the f64 product of the
/// decoded values times the scales.
#[test]
fn fp8_products_with_scales() {
    let (m, n, k) = (9, 23, 70);
    let fp8 = [DType::F8E4M3, DType::F8E5M2];
    let mut seed = 100;
    for (lt, rt) in fp8.iter().flat_map(|&l| fp8.map(|r| (l, r))) {
        for out in [DType::F32, DType::F16, DType::BF16] {
            for (case, per_row) in [false, true].into_iter().enumerate() {
                seed += 10;
                let (tl, tr) = (case == 1 && out != DType::F16, out != DType::BF16);
                let accumulate = out == DType::F32;
                let l_layout = Layout::contiguous(&if tl { [k, m] } else { [m, k] });
                let r_layout = Layout::contiguous(&if tr { [n, k] } else { [k, n] });
                let o_layout = Layout::contiguous(&[m, n]);
                let (lb, lv) = buffer(lt, &values(m * k, seed));
                let (rb, rv) = buffer(rt, &values(n * k, seed + 1));
                let scale = |len: usize, s: u64| -> Vec<f64> {
                    values(len, s).iter().map(|v| ((v * 3.0) as f32).exp2() as f64).collect()
                };
                let (sl, sr) = if per_row {
                    (scale(m, seed + 2), scale(n, seed + 3))
                } else {
                    (scale(1, seed + 2), scale(1, seed + 3))
                };
                let (sl_b, _) = buffer(DType::F32, &sl);
                let (sr_b, _) = buffer(DType::F32, &sr);
                let (sl_l, sr_l) = if per_row {
                    (Layout::contiguous(&[m]), Layout::contiguous(&[n]))
                } else {
                    (Layout::contiguous(&[]), Layout::contiguous(&[]))
                };
                let init = values(m * n, seed + 4);
                let (mut ob, ov) = buffer(out, &if accumulate { init } else { vec![f64::NAN; m * n] });
                let (bb, bv) = buffer(out, &values(n, seed + 5));
                let bias_layout = Layout::contiguous(&[n]);
                let desc = Matmul2d::new(m, n, k)
                    .transpose_left(tl)
                    .transpose_right(tr)
                    .mode(if accumulate { MatmulMode::MultiplyAccumulate } else { MatmulMode::Multiply })
                    .epilogue(Epilogue::Bias(Activation::Relu));
                matmul2d(
                    &desc,
                    TensorRef::new(lt, &lb, &l_layout),
                    TensorRef::new(rt, &rb, &r_layout),
                    Some(TensorRef::new(out, &bb, &bias_layout)),
                    Some(Scales {
                        left: TensorRef::new(DType::F32, &sl_b, &sl_l),
                        right: TensorRef::new(DType::F32, &sr_b, &sr_l),
                    }),
                    TensorMut::new(out, &mut ob, &o_layout),
                )
                .unwrap();
                let got = read(out, &ob);
                let eps = match out {
                    DType::F32 => 2f64.powi(-22),
                    DType::F16 => 2f64.powi(-10),
                    _ => 2f64.powi(-7),
                };
                for i in 0..m {
                    for j in 0..n {
                        let s = sl[if per_row { i } else { 0 }] * sr[if per_row { j } else { 0 }];
                        let (mut sum, mut mag) = (0.0, 0.0);
                        for p in 0..k {
                            let a = lv[if tl { p * m + i } else { i * k + p }];
                            let b = rv[if tr { j * k + p } else { p * n + j }];
                            sum += a * b * s;
                            mag += (a * b * s).abs();
                        }
                        if accumulate {
                            sum += ov[i * n + j];
                            mag += ov[i * n + j].abs();
                        }
                        let want = (sum + bv[j]).max(0.0);
                        mag += bv[j].abs();
                        let bound = eps * (mag + want.abs()) * (k as f64 + 2.0).sqrt();
                        assert!(
                            (got[i * n + j] - want).abs() <= bound,
                            "{lt}·{rt}->{out} tl={tl} tr={tr} per_row={per_row}: [{i},{j}] = {}, want {want}",
                            got[i * n + j]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn batches_transposes_and_broadcast() {
    for (tl, tr) in [(false, false), (true, false), (false, true), (true, true)] {
        case(DType::F32, DType::F32, &[3, 2], 13, 17, 19, tl, tr, MatmulMode::Multiply, Epilogue::None, false, 1);
        case(
            DType::F32,
            DType::F32,
            &[4, 2],
            9,
            40,
            33,
            tl,
            tr,
            MatmulMode::MultiplyAccumulate,
            Epilogue::Activation(Activation::Tanh),
            true,
            2,
        );
        case(DType::BF16, DType::BF16, &[5], 20, 8, 64, tl, tr, MatmulMode::Multiply, Epilogue::None, true, 3);
    }
    // An empty batch is a no-op.
    case(DType::F32, DType::F32, &[0, 3], 4, 4, 4, false, false, MatmulMode::Multiply, Epilogue::None, false, 4);
}

fn f32_operands(shapes: [&[usize]; 3]) -> ([CpuBuffer; 3], [Layout; 3]) {
    let bufs = shapes.map(|s| CpuBuffer::from_slice(&vec![1.5f32; s.iter().product()]).unwrap());
    (bufs, shapes.map(Layout::contiguous))
}

#[test]
fn bad_calls_are_errors_and_leave_the_output_alone() {
    let ([a, b, mut c], [la, lb, lc]) = f32_operands([&[4, 8], &[8, 5], &[4, 5]]);
    let mut call = |desc: Matmul2d, dl: DType, lb2: Option<&Layout>, lc2: Option<&Layout>, dout: DType| -> Error {
        let lbx = lb2.unwrap_or(&lb);
        let lcx = lc2.unwrap_or(&lc);
        matmul2d(
            &desc,
            TensorRef::new(dl, &a, &la),
            TensorRef::new(dl, &b, lbx),
            None,
            None,
            TensorMut::new(dout, &mut c, lcx),
        )
        .unwrap_err()
    };
    let msg = |e: Error| e.to_string();
    let e = msg(call(Matmul2d::new(4, 5, 7), DType::F32, None, None, DType::F32));
    assert!(e.contains("left operand has shape [4, 8]") && e.contains("k=7"), "{e}");
    let e = msg(call(Matmul2d::new(4, 5, 8).transpose_right(true), DType::F32, None, None, DType::F32));
    assert!(
        e.contains("right operand has shape [8, 5]") && e.contains("transpose_right") && e.contains("[5, 8]"),
        "{e}"
    );
    let e = msg(call(Matmul2d::new(4, 5, 8), DType::F32, None, None, DType::F16));
    assert!(e.contains("float32 · float32 -> float16"), "{e}");
    let e = msg(call(Matmul2d::new(4, 5, 8), DType::U8, None, None, DType::U8));
    assert!(e.contains("unsupported types uint8"), "{e}");
    // An operand that claims more elements than its buffer holds.
    let big = Layout::contiguous(&[8, 50]);
    let wide = Layout::contiguous(&[4, 50]);
    let e = msg(call(Matmul2d::new(4, 50, 8), DType::F32, Some(&big), Some(&wide), DType::F32));
    assert!(e.contains("outside its buffer of 40"), "{e}");
    // A broadcast output would write one element from several places.
    let bcast = Layout::new(&[4, 5], &[0, 1], 0).unwrap();
    let e = msg(call(Matmul2d::new(4, 5, 8), DType::F32, None, Some(&bcast), DType::F32));
    assert!(e.contains("share memory"), "{e}");
    // A bias in the epilogue without a bias operand.
    let e = msg(call(
        Matmul2d::new(4, 5, 8).epilogue(Epilogue::Bias(Activation::None)),
        DType::F32,
        None,
        None,
        DType::F32,
    ));
    assert!(e.contains("no bias operand"), "{e}");
    // Scales: only for fp8 operands, f32 of shape [] or [m] / [n].
    let one = Layout::contiguous(&[]);
    let rows = Layout::contiguous(&[3]);
    let s = CpuBuffer::from_slice(&[1.0f32; 8]).unwrap();
    let q = CpuBuffer::from_slice(&[0x38u8; 40]).unwrap();
    let mut scaled = |dl: DType, sl: &Layout| -> String {
        let scales = Scales { left: TensorRef::new(DType::F32, &s, sl), right: TensorRef::new(DType::F32, &s, &one) };
        let (x, y) = if dl == DType::F32 { (&a, &b) } else { (&q, &q) };
        matmul2d(
            &Matmul2d::new(4, 5, 8),
            TensorRef::new(dl, x, &la),
            TensorRef::new(dl, y, &lb),
            None,
            Some(scales),
            TensorMut::new(DType::F32, &mut c, &lc),
        )
        .unwrap_err()
        .to_string()
    };
    let e = scaled(DType::F32, &one);
    assert!(e.contains("scales apply to fp8 operands"), "{e}");
    let e = scaled(DType::F8E4M3, &rows);
    assert!(e.contains("left scale is float32 of shape [3]") && e.contains("[] or [4]"), "{e}");
    // Nothing above touched the output.
    assert!(c.typed::<f32>().iter().all(|&v| v == 1.5));
}
