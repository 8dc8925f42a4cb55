//! The FFT on a signal: two tones (50 and 120 Hz) in noise, sampled at 1 kHz for a second.
//! `rfft` finds the tones as the two largest peaks of the spectrum; zeroing every frequency
//! above 80 Hz and transforming back (`irfft`) leaves the 50 Hz tone. Writes `spectrum.png`
//! (the signal and the filtered one above, the spectrum below).
//!
//! `cargo run --release -p strata --example spectrum [-- OUT_DIR]`

use std::path::{Path, PathBuf};

use strata::{Array, DType, Result, fft};

#[path = "common/picture.rs"]
mod picture;

/// Samples (one second at 1 kHz).
pub const N: usize = 1000;

/// What the run found.
pub struct Summary {
    /// The two strongest frequencies (Hz), strongest first.
    pub peaks: [f32; 2],
    /// The RMS difference between the filtered signal and the pure 50 Hz tone.
    pub filtered_error: f32,
}

/// Analyses and plots; returns the picture's path and the summary.
pub fn run(dir: &Path) -> Result<(PathBuf, Summary)> {
    let t = strata::arange(0.0, N as f64, 1.0, DType::F32)? * (1.0 / N as f64);
    let tau = 2.0 * std::f64::consts::PI;
    let tone = strata::sin(&(&t * (tau * 50.0)))?;
    let noise = strata::random::normal(&[N], DType::F32, 0.0, 0.5, Some(&strata::random::key(7)))?;
    let signal = &tone + strata::sin(&(&t * (tau * 120.0)))? * 0.5 + &noise;

    let spectrum = fft::rfft(&signal, None, -1)?;
    let magnitude = strata::abs(&spectrum)? * (2.0 / N as f64);
    let freqs = fft::rfftfreq(N, 1.0 / N as f64)?;
    let order = strata::argsort(&strata::negative(&magnitude)?, Some(-1))?.to_vec::<u32>()?;
    let f = freqs.to_vec::<f32>()?;
    let peaks = [f[order[0] as usize], f[order[1] as usize]];

    // A brick-wall low-pass at 80 Hz.
    let keep = strata::less_equal(&freqs, &Array::scalar(80.0f32))?;
    let filtered = fft::irfft(&strata::multiply(&spectrum, &keep.astype(DType::F32)?)?, Some(N), -1)?;
    let diff = &filtered - &tone;
    let filtered_error = strata::sqrt(&strata::mean(&(&diff * &diff), None, false)?)?.item::<f32>()?;

    let (w, h) = (900usize, 560usize);
    let mut c = picture::Canvas::new(w, h, [255, 255, 255]);
    // Top: the first 200 ms of the signal (grey) and the filtered one (red).
    let shown = 200;
    let tx = |i: usize| 20.0 + i as f64 / shown as f64 * (w as f64 - 40.0);
    let ty = |v: f32| 140.0 - v as f64 * 45.0;
    c.line((tx(0), ty(0.0)), (tx(shown), ty(0.0)), [210, 210, 210]);
    for (values, color) in [(signal.to_vec::<f32>()?, [150, 150, 150]), (filtered.to_vec::<f32>()?, [220, 60, 40])] {
        for i in 1..shown {
            c.line((tx(i - 1), ty(values[i - 1])), (tx(i), ty(values[i])), color);
        }
    }
    // Bottom: the magnitude spectrum up to 250 Hz, the cut-off dashed.
    let m = magnitude.to_vec::<f32>()?;
    let top = m.iter().copied().fold(0.0f32, f32::max).max(1e-6);
    let fx = |hz: f32| 20.0 + hz as f64 / 250.0 * (w as f64 - 40.0);
    let fy = |v: f32| h as f64 - 20.0 - v as f64 / top as f64 * 250.0;
    c.line((fx(0.0), fy(0.0)), (fx(250.0), fy(0.0)), [210, 210, 210]);
    for y in (0..250).step_by(12) {
        c.line((fx(80.0), fy(0.0) - y as f64), (fx(80.0), fy(0.0) - y as f64 - 6.0), [120, 120, 220]);
    }
    for (k, (&hz, &v)) in f.iter().zip(&m).enumerate().take_while(|(_, (hz, _))| **hz <= 250.0) {
        let color = if order[..2].contains(&(k as u32)) { [220, 60, 40] } else { [30, 90, 200] };
        c.line((fx(hz), fy(0.0)), (fx(hz), fy(v)), color);
    }
    let path = dir.join("spectrum.png");
    c.save(&path).map_err(|e| strata::Error::InvalidArgument {
        op: "spectrum",
        message: format!("writing {}: {e}", path.display()),
    })?;
    Ok((path, Summary { peaks, filtered_error }))
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let t = std::time::Instant::now();
    let (path, s) = run(&dir)?;
    println!(
        "tones found at {} and {} Hz; low-passed at 80 Hz, RMS distance to the 50 Hz tone {:.3} ({:.2} s); wrote {}",
        s.peaks[0],
        s.peaks[1],
        s.filtered_error,
        t.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(())
}
