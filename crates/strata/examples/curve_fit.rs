//! Fitting a curve with `grad`: a degree-5 polynomial fitted to noisy samples of a sine by
//! Adam on the mean squared error, no hand-written derivatives. Writes `curve_fit.png` (the
//! samples and the fit).
//!
//! `cargo run --release -p strata --example curve_fit [-- OUT_DIR]`

use std::path::{Path, PathBuf};

use strata::{Array, DType, Result, value_and_grad};

#[path = "common/picture.rs"]
mod picture;

/// Adam steps taken.
pub const STEPS: usize = 1500;
const DEGREE: usize = 5;

/// `Σ w[k] x^k` for a column of x.
fn poly(w: &Array, x: &Array) -> Result<Array> {
    let powers = strata::power(x, &strata::arange(0.0, DEGREE as f64 + 1.0, 1.0, DType::F32)?)?;
    strata::matmul(&powers, w)
}

/// Fits and plots; returns the picture's path and the final mean squared error.
pub fn run(dir: &Path) -> Result<(PathBuf, f32)> {
    let n = 64;
    let x = strata::linspace(-3.0, 3.0, n, DType::F32)?.reshape(&[-1, 1])?;
    // Deterministic "noise": a fast wiggle of amplitude 0.1.
    let noise = strata::sin(&(&x * 37.0))? * 0.1;
    let y = strata::sin(&x)? + &noise;
    let loss = |a: &[Array]| -> Result<Array> {
        let r = poly(&a[0], &a[1])? - &a[2];
        strata::mean(&(&r * &r), None, false)
    };
    let step = value_and_grad(loss, &[0]);
    let mut w = strata::zeros(&[DEGREE + 1, 1], DType::F32)?;
    let (mut m, mut v) = (strata::zeros_like(&w)?, strata::zeros_like(&w)?);
    let (lr, b1, b2) = (0.05, 0.9, 0.999);
    let mut last = f32::NAN;
    for t in 1..=STEPS {
        let (l, g) = step(&[w.clone(), x.clone(), y.clone()])?;
        let g = &g[0];
        m = b1 * &m + (1.0 - b1) * g;
        v = b2 * &v + (1.0 - b2) * (g * g);
        let mh = &m * (1.0 / (1.0 - b1.powi(t as i32)));
        let vh = &v * (1.0 / (1.0 - b2.powi(t as i32)));
        w = &w - lr * mh / (strata::sqrt(&vh)? + 1e-8);
        strata::eval_all(&[&w, &m, &v, &l])?;
        last = l.item::<f32>()?;
    }
    // Plot: samples as dots, the fit as a line over a fine grid.
    let (wd, ht) = (720usize, 480usize);
    let mut c = picture::Canvas::new(wd, ht, [255, 255, 255]);
    let sx = |x: f64| (x + 3.2) / 6.4 * wd as f64;
    let sy = |y: f64| (1.5 - y) / 3.0 * ht as f64;
    c.line((sx(-3.2), sy(0.0)), (sx(3.2), sy(0.0)), [200, 200, 200]);
    c.line((sx(0.0), sy(-1.5)), (sx(0.0), sy(1.5)), [200, 200, 200]);
    let fine = strata::linspace(-3.0, 3.0, 400, DType::F32)?.reshape(&[-1, 1])?;
    let fit = poly(&w, &fine)?.to_vec::<f32>()?;
    let fx = fine.to_vec::<f32>()?;
    for k in 1..fx.len() {
        c.line((sx(fx[k - 1] as f64), sy(fit[k - 1] as f64)), (sx(fx[k] as f64), sy(fit[k] as f64)), [220, 60, 40]);
    }
    for (&xv, &yv) in x.to_vec::<f32>()?.iter().zip(&y.to_vec::<f32>()?) {
        c.dot(sx(xv as f64), sy(yv as f64), 4, [30, 90, 200]);
    }
    let path = dir.join("curve_fit.png");
    c.save(&path).map_err(|e| strata::Error::InvalidArgument {
        op: "curve_fit",
        message: format!("writing {}: {e}", path.display()),
    })?;
    Ok((path, last))
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let t = std::time::Instant::now();
    let (path, mse) = run(&dir)?;
    println!(
        "wrote {}: degree-{DEGREE} fit after {STEPS} Adam steps, mse {mse:.5} ({:.2} s)",
        path.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
