//! The flight recorder on a small game loop: two state domains (scene and network), frames at
//! about 120 fps with a heavier "playing" scene, spans and counters; then the overview of this
//! very process read back from the store, and frame rate attributed to each scene.
//!
//! `cargo run --release -p strata-trace --example trace_demo [-- SECONDS]`
//!
//! Afterwards `strata trace overview --last 5m --process trace_demo` shows the same from the
//! command line, and `strata trace collect --last 5m -o demo.strace` then
//! `strata trace export demo.strace` gives a file for ui.perfetto.dev.

use std::time::{Duration, Instant};

use strata_trace::{Outcome, ProcessFilter, SegmentKind, Store, Trace, TraceError};

strata_trace::metadata! {
    /// Which level the player is in.
    struct Level { index: u32, name: String }
}
strata_trace::metadata! {
    /// What is being downloaded.
    struct Download { url: String }
}
strata_trace::metadata! {
    /// How far the download is.
    struct Bytes { received: u64 }
}

/// Burns about `us` microseconds of CPU in a way the optimiser cannot remove.
fn work(us: u64) -> f64 {
    let t = Instant::now();
    let mut x = 1.0f64;
    while t.elapsed() < Duration::from_micros(us) {
        for _ in 0..200 {
            x = (x * 1.000_001).sin() + 1.0;
        }
    }
    x
}

/// Runs the loop for `seconds` and returns this process's records read back from the store.
pub fn run(seconds: f64) -> Result<Trace, TraceError> {
    let started = strata_trace::now_ns();
    let scene = strata_trace::state_domain::<Level, ()>("scene")?;
    let net = strata_trace::state_domain::<Download, Bytes>("network")?;
    scene.transition("menu", Level { index: 0, name: "title".into() }, ())?;
    let frame_budget = Duration::from_micros(8_333);
    let t0 = Instant::now();
    let mut sink = 0.0;
    let mut frame = 0u64;
    while t0.elapsed().as_secs_f64() < seconds {
        let f = Instant::now();
        let phase = t0.elapsed().as_secs_f64() / seconds;
        // menu → playing level 1 (while a download runs) → menu.
        if phase > 0.25 && phase < 0.8 {
            scene.transition("playing", Level { index: 1, name: "caves".into() }, ())?;
        } else if phase >= 0.8 {
            scene.transition("menu", Level { index: 0, name: "title".into() }, ())?;
        }
        if phase > 0.4 && phase < 0.7 {
            let d = Download { url: "https://example.org/level2.pak".into() };
            if net.transition("downloading", d, Bytes { received: 0 })? == Outcome::Unchanged
                && frame.is_multiple_of(30)
            {
                net.update_volatile(Bytes { received: frame * 65_536 })?;
            }
        } else {
            net.clear()?;
        }
        {
            let _s = strata_trace::span("update");
            sink += work(if scene.current().as_deref() == Some("playing") { 3_000 } else { 1_000 });
        }
        {
            let _s = strata_trace::span("render");
            sink += work(1_500);
        }
        strata_trace::counter("entities", (100 + frame % 50) as f64);
        let cpu = f.elapsed();
        strata_trace::frame_end(cpu, None);
        frame += 1;
        if let Some(rest) = frame_budget.checked_sub(f.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    std::hint::black_box(sink);
    strata_trace::flush()?;
    let Some(config) = strata_trace::config() else {
        return Err(TraceError::Usage("tracing is off (STRATA_TRACE=off): nothing was recorded".into()));
    };
    let window = Some((started, strata_trace::now_ns()));
    let filter = ProcessFilter::Pid(std::process::id());
    Store::new(config.dir)
        .load(SegmentKind::Detail, window, &filter, &mut |_, _| {}, &mut |w| eprintln!("warning: {w}"))
}

#[allow(dead_code)]
fn main() -> Result<(), TraceError> {
    let seconds = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let trace = run(seconds)?;
    print!("{}", strata_trace::overview(&trace, true).to_text());
    print!("{}", strata_trace::aggregate(&trace, "scene", None).to_text());
    Ok(())
}
