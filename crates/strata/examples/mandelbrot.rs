//! The Mandelbrot set as one array expression: every pixel iterates `z ← z² + c` at once,
//! the step compiled into a fused kernel. Writes `mandelbrot.png`.
//!
//! `cargo run --release -p strata --example mandelbrot [-- OUT_DIR]`

use std::path::{Path, PathBuf};

use strata::{Array, DType, Result, compile};

#[path = "common/picture.rs"]
mod picture;

/// Iterations of z ← z² + c per pixel.
pub const ITERATIONS: usize = 80;

/// Renders a `width × height` view of the set to `dir/mandelbrot.png`; returns its path.
pub fn run(dir: &Path, width: usize, height: usize) -> Result<PathBuf> {
    let xs = strata::linspace(-2.2, 0.8, width, DType::F32)?.reshape(&[1, -1])?;
    let ys = strata::linspace(-1.2, 1.2, height, DType::F32)?.reshape(&[-1, 1])?;
    let shape = [height, width];
    let (cr, ci) = (strata::broadcast_to(&xs, &shape)?, strata::broadcast_to(&ys, &shape)?);
    // One step for every pixel: z ← z² + c (clipped so escaped points stay finite), and a
    // count of the steps each pixel has stayed bounded.
    let step = compile(|a: &[Array]| {
        let (zr, zi, cr, ci, n) = (&a[0], &a[1], &a[2], &a[3], &a[4]);
        let zr2 = strata::clip(&(zr * zr - zi * zi + cr), Some(-4.0), Some(4.0))?;
        let zi2 = strata::clip(&(2.0 * zr * zi + ci), Some(-4.0), Some(4.0))?;
        let inside = strata::less_equal(&(&zr2 * &zr2 + &zi2 * &zi2), &Array::scalar(4.0f32))?;
        Ok(vec![zr2, zi2, n + inside.astype(DType::F32)?])
    });
    let mut s = vec![
        strata::zeros(&shape, DType::F32)?,
        strata::zeros(&shape, DType::F32)?,
        cr,
        ci,
        strata::zeros(&shape, DType::F32)?,
    ];
    for i in 0..ITERATIONS {
        let out = step.call(&s)?;
        (s[0], s[1], s[4]) = (out[0].clone(), out[1].clone(), out[2].clone());
        if i % 10 == 9 {
            strata::eval_all(&[&s[0], &s[1], &s[4]])?;
        }
    }
    let counts = s[4].to_vec::<f32>()?;
    let mut canvas = picture::Canvas::new(width, height, [0, 0, 0]);
    for (i, &n) in counts.iter().enumerate() {
        let c =
            if n as usize >= ITERATIONS { [0, 0, 0] } else { picture::colormap((n as f64 / ITERATIONS as f64).sqrt()) };
        canvas.set((i % width) as i64, (i / width) as i64, c);
    }
    let path = dir.join("mandelbrot.png");
    canvas.save(&path).map_err(|e| strata::Error::InvalidArgument {
        op: "mandelbrot",
        message: format!("writing {}: {e}", path.display()),
    })?;
    Ok(path)
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let t = std::time::Instant::now();
    let path = run(&dir, 900, 720)?;
    println!(
        "wrote {} ({ITERATIONS} iterations, {:.2} s on {})",
        path.display(),
        t.elapsed().as_secs_f64(),
        strata::default_device()
    );
    Ok(())
}
