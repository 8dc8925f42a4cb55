//! Heat diffusion to a steady state: a square plate whose top edge is held hot, a hot disc in
//! the middle, the other edges cold. Each Jacobi step is one `conv2d` (the 5-point average
//! stencil); each SOR (successive over-relaxation) step is two, one per colour of a red-black
//! checkerboard, over-relaxed by ω. Writes `heat.png`: the temperature SOR reached, and the
//! convergence of both (log₁₀ of the largest change per step, Jacobi blue, SOR red).
//!
//! `cargo run --release -p strata --example heat [-- OUT_DIR]`

use std::path::{Path, PathBuf};

use strata::{Array, Result, compile};

#[path = "common/picture.rs"]
mod picture;

/// Grid points per side.
pub const N: usize = 96;
/// Steps of each method.
pub const STEPS: usize = 600;

/// What the run found.
pub struct Summary {
    /// The largest change in the last step: Jacobi, SOR.
    pub last_change: (f32, f32),
    /// Steps each method took to bring the change below 1e-4 (`None`: it did not).
    pub steps_to_1e4: (Option<usize>, Option<usize>),
    /// The relaxation factor used.
    pub omega: f64,
}

/// The 5-point average as a `[1, 3, 3, 1]` (OHWI) weight, scaled by `s`.
fn stencil(s: f32) -> Result<Array> {
    let q = 0.25 * s;
    Array::from_slice(&[0.0, q, 0.0, q, 0.0, q, 0.0, q, 0.0], &[1, 3, 3, 1])
}

/// Runs both solvers and draws the picture; returns its path and a summary.
pub fn run(dir: &Path) -> Result<(PathBuf, Summary)> {
    // Boundary conditions: `fixed` marks cells held at `value` (edges and the disc).
    let mut fixed = vec![0.0f32; N * N];
    let mut value = vec![0.0f32; N * N];
    for i in 0..N {
        for j in 0..N {
            let (y, x) = (i as f32 - N as f32 * 0.55, j as f32 - N as f32 * 0.5);
            let edge = i == 0 || j == 0 || i == N - 1 || j == N - 1;
            let disc = x * x + y * y < (N as f32 * 0.12).powi(2);
            if edge || disc {
                fixed[i * N + j] = 1.0;
                value[i * N + j] = if i == 0 || disc { 1.0 } else { 0.0 };
            }
        }
    }
    let shape = [1, N, N, 1];
    let free = Array::from_slice(&fixed.iter().map(|f| 1.0 - f).collect::<Vec<f32>>(), &shape)?;
    let start = Array::from_slice(&value, &shape)?;
    // Red and black cells (i + j even / odd), free ones only.
    let parity: Vec<f32> = (0..N * N).map(|k| ((k / N + k % N) % 2) as f32).collect();
    let black = Array::from_slice(&parity, &shape)? * &free;
    let red = &free - &black;
    let omega = 2.0 / (1.0 + (std::f64::consts::PI / (N - 1) as f64).sin());

    // u ← u + m·(avg(u) − u) on the cells of mask m: one convolution. Jacobi uses m = free
    // (all at once); SOR uses ω·red then ω·black, each half seeing the other's new values.
    let relax = |u: &Array, m: &Array| -> Result<Array> {
        let avg = strata::conv2d(u, &stencil(1.0)?, [1, 1], [1, 1], [1, 1], 1)?;
        Ok(u + m * (avg - u))
    };
    let jacobi = compile(move |a: &[Array]| {
        let u = relax(&a[0], &a[1])?;
        let change = strata::max(&strata::abs(&(&u - &a[0]))?, None, false)?;
        Ok(vec![u, change])
    });
    let sor = compile(move |a: &[Array]| {
        let half = relax(&a[0], &a[1])?;
        let u = relax(&half, &a[2])?;
        let change = strata::max(&strata::abs(&(&u - &a[0]))?, None, false)?;
        Ok(vec![u, change])
    });
    let (w_red, w_black) = (&red * omega, &black * omega);
    let mut history = [Vec::with_capacity(STEPS), Vec::with_capacity(STEPS)];
    let (mut uj, mut us) = (start.clone(), start);
    for _ in 0..STEPS {
        let j = jacobi.call(&[uj.clone(), free.clone()])?;
        let s = sor.call(&[us.clone(), w_red.clone(), w_black.clone()])?;
        (uj, us) = (j[0].clone(), s[0].clone());
        strata::eval_all(&[&uj, &us, &j[1], &s[1]])?;
        history[0].push(j[1].item::<f32>()?);
        history[1].push(s[1].item::<f32>()?);
    }
    let below = |h: &[f32]| h.iter().position(|&c| c < 1e-4).map(|k| k + 1);
    let summary = Summary {
        last_change: (history[0][STEPS - 1], history[1][STEPS - 1]),
        steps_to_1e4: (below(&history[0]), below(&history[1])),
        omega,
    };

    // Left: the temperature field, 5 pixels per cell. Right: the convergence plot.
    let (cell, plot_w) = (5usize, 480usize);
    let (wd, ht) = (N * cell + plot_w, N * cell);
    let mut c = picture::Canvas::new(wd, ht, [255, 255, 255]);
    for (k, &t) in us.to_vec::<f32>()?.iter().enumerate() {
        let col = picture::colormap(0.1 + 0.55 * t as f64);
        for dy in 0..cell {
            for dx in 0..cell {
                c.set(((k % N) * cell + dx) as i64, ((k / N) * cell + dy) as i64, col);
            }
        }
    }
    let (x0, x1, top, bottom) = ((N * cell + 40) as f64, (wd - 20) as f64, 20.0, (ht - 30) as f64);
    let (lo, hi) = (-7.0f64, 0.0f64); // log10 range shown
    let sx = |k: usize| x0 + (x1 - x0) * k as f64 / STEPS as f64;
    let sy = |v: f32| {
        let l = (v.max(1e-30) as f64).log10().clamp(lo, hi);
        top + (bottom - top) * (hi - l) / (hi - lo)
    };
    for d in 0..=((hi - lo) as i32) {
        // A grid line per decade.
        let y = top + (bottom - top) * d as f64 / (hi - lo);
        c.line((x0, y), (x1, y), [225, 225, 225]);
    }
    c.line((x0, top), (x0, bottom), [120, 120, 120]);
    c.line((x0, bottom), (x1, bottom), [120, 120, 120]);
    for (h, col) in history.iter().zip([[30, 90, 200], [220, 60, 40]]) {
        for k in 1..h.len() {
            c.line((sx(k - 1), sy(h[k - 1])), (sx(k), sy(h[k])), col);
        }
    }
    let path = dir.join("heat.png");
    c.save(&path).map_err(|e| strata::Error::InvalidArgument {
        op: "heat",
        message: format!("writing {}: {e}", path.display()),
    })?;
    Ok((path, summary))
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let t = std::time::Instant::now();
    let (path, s) = run(&dir)?;
    let steps = |n: Option<usize>| n.map_or(format!("not within {STEPS}"), |n| n.to_string());
    println!(
        "wrote {} ({N}×{N} plate, {STEPS} steps each, {:.2} s on {})\n  Jacobi: last change {:.1e}, steps to 1e-4: {}\n  SOR (ω = {:.3}): last change {:.1e}, steps to 1e-4: {}",
        path.display(),
        t.elapsed().as_secs_f64(),
        strata::default_device(),
        s.last_change.0,
        steps(s.steps_to_1e4.0),
        s.omega,
        s.last_change.1,
        steps(s.steps_to_1e4.1),
    );
    Ok(())
}
