//! Arrays on the wgpu device (the `wgpu` feature): a small program of element-wise maths,
//! reductions, a matmul, a convolution, a sort and a gradient gives the CPU's answer (the
//! convolution and the sort run on WGSL kernels of their own, as the rest do). Its own test
//! binary, since it changes the default device. Runs on any adapter (lavapipe in CI, `STRATA_WGPU_ADAPTER`);
//! `STRATA_REQUIRE_WGPU=1` makes a missing one a failure.
#![cfg(feature = "wgpu")]

use strata::{Array, Device, exp, full, multiply, set_default_device, square, tanh};

type Outputs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn program(x: &Array, w: &Array) -> strata::Result<Outputs> {
    let h = tanh(&x.matmul(w)?)?;
    let s = exp(&multiply(&h, &full(&[1], 2.0, strata::DType::F32)?)?)?.sum(Some(&[1]), false)?;
    let loss = |a: &[Array]| {
        let c = strata::conv1d(&a[0].reshape(&[1, 6, 5])?, &a[1].reshape(&[4, 1, 5])?, 1, 0, 1, 1)?;
        square(&tanh(&(a[0].matmul(&a[1])? + c.reshape(&[6, 4])?))?)?.sum(None, false)
    };
    let g = strata::grad(loss, &[1])(&[x.clone(), w.clone()])?;
    let sorted = strata::sort(&h, Some(0))?;
    Ok((h.to_vec::<f32>()?, s.to_vec::<f32>()?, g[0].to_vec::<f32>()?, sorted.to_vec::<f32>()?))
}

#[test]
fn a_program_on_wgpu_gives_the_cpus_answer() {
    let device = match Device::from_name("wgpu") {
        Ok(d) => d,
        Err(e) => {
            assert!(std::env::var_os("STRATA_REQUIRE_WGPU").is_none(), "STRATA_REQUIRE_WGPU is set: {e}");
            eprintln!("not run: {e}");
            return;
        }
    };
    let xs: Vec<f32> = (0..6 * 5).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
    let ws: Vec<f32> = (0..5 * 4).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
    let run = |d: Device| {
        set_default_device(d);
        let x = Array::from_slice(&xs, &[6, 5]).unwrap();
        let w = Array::from_slice(&ws, &[5, 4]).unwrap();
        assert_eq!(x.device(), d);
        program(&x, &w).unwrap()
    };
    let cpu = run(Device::Cpu);
    let gpu = run(device);
    let pairs = [
        ("tanh(x·w)", &gpu.0, &cpu.0),
        ("sum exp", &gpu.1, &cpu.1),
        ("grad", &gpu.2, &cpu.2),
        ("sort", &gpu.3, &cpu.3),
    ];
    for (what, a, b) in pairs {
        assert_eq!(a.len(), b.len());
        for (i, (p, q)) in a.iter().zip(b.iter()).enumerate() {
            assert!((p - q).abs() <= 1e-4 * q.abs().max(1.0), "{what}[{i}]: wgpu {p}, cpu {q}");
        }
    }
}
