//! `strata tour`: runs the array-layer examples on the default device and says what ran
//! where, how long it took, and where the pictures are.

use std::path::PathBuf;
use std::time::Instant;

// The examples are the `strata` crate's own (`cargo run --example NAME` runs the same code);
// each includes the small picture helper, hence the duplicate module.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../strata/examples/curve_fit.rs"]
mod curve_fit;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../strata/examples/heat.rs"]
mod heat;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../strata/examples/mandelbrot.rs"]
mod mandelbrot;
#[allow(clippy::duplicate_mod)]
#[path = "../../strata/examples/common/picture.rs"]
mod picture;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../strata/examples/spectrum.rs"]
mod spectrum;
#[allow(dead_code)]
#[path = "../../strata-trace/examples/trace_demo.rs"]
mod trace_demo;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../strata/examples/train_mlp.rs"]
mod train_mlp;

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
    println!(
        "Strata tour on {} ({} CPU threads); pictures go to {}\n",
        device.describe(),
        rayon_threads(),
        args.out.display()
    );
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
    let t = Instant::now();
    let (path, s) = heat::run(&args.out)?;
    let steps = |n: Option<usize>| n.map_or(format!("more than {}", heat::STEPS), |n| n.to_string());
    println!(
        "  heat         {:>7.2} s  {n}×{n} plate to steady state, Jacobi (one conv2d a step) vs SOR ω={:.3} (two): steps to a change < 1e-4, {} vs {}\n               -> {}",
        t.elapsed().as_secs_f64(),
        s.omega,
        steps(s.steps_to_1e4.0),
        steps(s.steps_to_1e4.1),
        path.display(),
        n = heat::N,
    );
    let t = Instant::now();
    let (path, s) = train_mlp::run(&args.out, true)?;
    println!(
        "  train_mlp    {:>7.2} s  a {}-parameter MLP on a 3-class spiral, AdamW, {} epochs: loss {:.3} -> {:.4}, accuracy {:.1}%\n               -> {} (weights: {})",
        t.elapsed().as_secs_f64(),
        s.parameters,
        train_mlp::EPOCHS,
        s.loss.0,
        s.loss.1,
        100.0 * s.accuracy,
        path.display(),
        s.weights.display(),
    );
    let t = Instant::now();
    let (path, s) = spectrum::run(&args.out)?;
    println!(
        "  spectrum     {:>7.2} s  rfft of {} noisy samples: tones at {} and {} Hz; low-passed at 80 Hz by irfft, {:.3} RMS from the 50 Hz tone\n               -> {}",
        t.elapsed().as_secs_f64(),
        spectrum::N,
        s.peaks[0],
        s.peaks[1],
        s.filtered_error,
        path.display()
    );
    let t = Instant::now();
    match trace_demo::run(2.0) {
        Ok(trace) => {
            let path = args.out.join("trace_frames.png");
            frame_picture(&trace, &path)?;
            let agg = strata_trace::aggregate(&trace, "scene", None);
            let per_scene: Vec<String> = agg
                .processes
                .iter()
                .flat_map(|p| &p.states)
                .map(|s| {
                    let fps = s.frames.as_ref().map_or(0.0, |f| f.fps);
                    let p99 = s.frames.as_ref().map_or(0.0, |f| f.p99_ms);
                    format!("{} {fps:.0} fps (p99 {p99:.1} ms)", s.label)
                })
                .collect();
            println!(
                "  trace        {:>7.2} s  a 120 fps loop with two state domains, read back from the flight recorder: {}\n               -> {}\n               (then: strata trace overview --last 5m --include-state-transitions)",
                t.elapsed().as_secs_f64(),
                per_scene.join(", "),
                path.display()
            );
        }
        Err(e) => println!("  trace        skipped: {e}"),
    }
    strata_trace::flush()?;
    Ok(())
}

/// Frame times over time, one dot per frame coloured by the scene state, with the network
/// download drawn as a bar underneath.
fn frame_picture(trace: &strata_trace::Trace, path: &std::path::Path) -> std::io::Result<()> {
    use strata_trace::RecordKind;
    let (w, h, margin) = (900usize, 360usize, 30.0);
    let mut c = picture::Canvas::new(w, h, [255, 255, 255]);
    let Some(p) = trace.processes.first() else { return c.save(path) };
    let frames: Vec<(u64, u64)> = p
        .records
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Frame { .. }))
        .map(|r| r.ts)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[1], w[1] - w[0]))
        .collect();
    let (Some(&(t0, _)), Some(&(t1, _))) = (frames.first(), frames.last()) else { return c.save(path) };
    let max_ms = frames.iter().map(|&(_, d)| d as f64 / 1e6).fold(10.0, f64::max) * 1.1;
    let x = |t: u64| margin + (t.saturating_sub(t0)) as f64 / (t1 - t0).max(1) as f64 * (w as f64 - 2.0 * margin);
    let y = |ms: f64| (h as f64 - 2.0 * margin) * (1.0 - ms / max_ms) + margin / 2.0;
    for ms in (0..=(max_ms as u64)).step_by(2) {
        c.line(
            (margin, y(ms as f64)),
            (w as f64 - margin, y(ms as f64)),
            if ms % 10 == 0 { [200, 200, 200] } else { [238, 238, 238] },
        );
    }
    let states = strata_trace::state_intervals(p);
    let colour = |label: &str| if label == "playing" { [230, 120, 20] } else { [40, 90, 200] };
    for &(t, d) in &frames {
        let label = states
            .iter()
            .find(|s| s.domain == "scene" && s.start_ns < t && t <= s.end_ns)
            .map_or("", |s| s.label.as_str());
        c.dot(x(t), y(d as f64 / 1e6), 2, colour(label));
    }
    for s in states.iter().filter(|s| s.domain == "network") {
        for row in 0..6 {
            let yy = h as f64 - margin / 2.0 - row as f64;
            c.line((x(s.start_ns), yy), (x(s.end_ns), yy), [40, 160, 80]);
        }
    }
    c.save(path)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
