//! `strata tour`: runs the array-layer examples on the default device and says what ran
//! where, how long it took, and where the pictures are.

use std::path::PathBuf;
use std::time::Instant;

// The examples are the `strata` crate's own (`cargo run --example NAME` runs the same code);
// each includes the small picture helper, hence the duplicate module.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../strata/examples/curve_fit.rs"]
mod curve_fit;
#[allow(dead_code)]
#[path = "../../strata/examples/mandelbrot.rs"]
mod mandelbrot;

/// Arguments of `strata tour`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the pictures.
    #[arg(long, default_value = "target/tour")]
    pub out: PathBuf,
}

pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    let device = strata::default_device();
    println!("Strata tour on {device} ({} threads); pictures go to {}\n", rayon_threads(), args.out.display());
    let t = Instant::now();
    let path = mandelbrot::run(&args.out, 900, 720)?;
    println!(
        "  mandelbrot   {:>7.2} s  900×720 grid, {} compiled steps of z ← z² + c as one array expression\n               -> {}",
        t.elapsed().as_secs_f64(),
        mandelbrot::ITERATIONS,
        path.display()
    );
    let t = Instant::now();
    let (path, mse) = curve_fit::run(&args.out)?;
    println!(
        "  curve_fit    {:>7.2} s  degree-5 polynomial fitted to a noisy sine by grad + Adam, {} steps, mse {mse:.5}\n               -> {}",
        t.elapsed().as_secs_f64(),
        curve_fit::STEPS,
        path.display()
    );
    println!("\n(the heat-diffusion example arrives with conv2d in the array layer)");
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
