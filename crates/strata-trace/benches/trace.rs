//! The recorder's cost: nanoseconds per event on the hot path, the overhead on a workload that
//! emits 10,000 events a second (recorder on against off, in alternating child processes), and
//! bytes per event on disk.
//!
//! `cargo bench -p strata-trace --bench trace [-- --pairs 8 --seconds 1]`

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD: &str = "STRATA_TRACE_BENCH_CHILD";

fn cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// About 100 µs of arithmetic.
fn unit(x: f64) -> f64 {
    let mut y = x;
    for _ in 0..40_000 {
        y = y.mul_add(1.000_000_1, 1e-9);
    }
    y
}

/// The A/B workload: `seconds` of work units (or exactly `units` of them), one span per unit
/// plus a counter every unit and a frame every tenth (≈ 10k+ events/s). Prints CPU ns per unit.
fn workload(seconds: f64, units: Option<u64>) {
    let t = Instant::now();
    let c0 = cpu_ns();
    let (mut n, mut x) = (0u64, 1.0);
    while units.map_or(t.elapsed().as_secs_f64() < seconds, |u| n < u) {
        {
            let _s = strata_trace::span("unit");
            x = unit(x);
        }
        strata_trace::counter("x", x);
        if n % 10 == 0 {
            strata_trace::frame_end(Duration::from_micros(100), None);
        }
        n += 1;
    }
    strata_trace::flush().unwrap();
    black_box(x);
    let stats = strata_trace::stats();
    println!("{} {n} {} {}", (cpu_ns() - c0) as f64 / n as f64, stats.flush_time.as_nanos(), stats.bytes_written);
}

fn hot_path() {
    // Batches that fit the ring, flushed between timings, so that the timed path is the one
    // that records (a full ring drops, which is cheaper and would flatter the numbers).
    let batch = 8_000;
    let domain = strata_trace::state_domain_with::<(), ()>(
        "bench",
        strata_trace::DomainOptions { burst: u32::MAX, per_second: 1e12, ..Default::default() },
    )
    .unwrap();
    type Case = (&'static str, Box<dyn Fn(u64)>);
    let cases: Vec<Case> = vec![
        ("span (begin + end)", Box::new(|_| drop(strata_trace::span("s")))),
        ("instant", Box::new(|_| strata_trace::instant("i"))),
        ("counter", Box::new(|i| strata_trace::counter("c", i as f64))),
        ("frame_end", Box::new(|_| strata_trace::frame_end(Duration::from_micros(5), None))),
        (
            "state transition",
            Box::new(move |i| {
                domain.transition(if i % 2 == 0 { "a" } else { "b" }, (), ()).unwrap();
            }),
        ),
    ];
    println!("hot path, ns per event (median of 25 batches of {batch}):");
    for (name, f) in &cases {
        let mut per = Vec::new();
        for _ in 0..25 {
            strata_trace::flush().unwrap();
            let t = Instant::now();
            for i in 0..batch {
                f(i);
            }
            per.push(t.elapsed().as_nanos() as f64 / batch as f64);
        }
        per.sort_by(f64::total_cmp);
        println!("  {name:<20} {:>7.1}", per[per.len() / 2]);
    }
}

fn child(mode: &str, on: bool, dir: &std::path::Path) -> String {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env(CHILD, mode).env("STRATA_TRACE_DIR", dir);
    if on {
        c.env_remove("STRATA_TRACE");
    } else {
        c.env("STRATA_TRACE", "off");
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Instructions of the whole process (every thread, the flusher included) for a fixed amount
/// of work, recorder on against off: deterministic where the timings are too noisy to resolve
/// one percent.
fn callgrind(dir: &std::path::Path, units: u64) {
    let count = |on: bool| -> u64 {
        let mut c = Command::new("valgrind");
        c.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(std::env::current_exe().unwrap())
            .env(CHILD, format!("units:{units}"))
            .env("STRATA_TRACE_DIR", dir);
        if on {
            c.env_remove("STRATA_TRACE");
        } else {
            c.env("STRATA_TRACE", "off");
        }
        let out = c.output().expect("valgrind runs");
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().find(|l| l.contains("Collected :")).unwrap_or_else(|| panic!("no total in:\n{err}"));
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    };
    let (on, off) = (count(true), count(false));
    let events = units * 2 + units / 10;
    println!(
        "callgrind, {units} units ({events} events): {on} instructions on, {off} off → overhead {:+.3}% ({:.0} instructions per event)",
        (on as f64 / off as f64 - 1.0) * 100.0,
        (on - off) as f64 / events as f64
    );
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("detail")).map_or(0, |d| d.flatten().map(|e| e.metadata().unwrap().len()).sum())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |k: &str, d: f64| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(d);
    if let Ok(mode) = std::env::var(CHILD) {
        match mode.as_str() {
            "hot" => hot_path(),
            m => match m.strip_prefix("units:") {
                Some(u) => workload(0.0, Some(u.parse().unwrap())),
                None => workload(m.parse().unwrap(), None),
            },
        }
        return;
    }
    let (pairs, seconds) = (arg("--pairs", 8.0) as usize, arg("--seconds", 1.0));
    let dir = std::env::temp_dir().join(format!("strata-trace-bench-{}", std::process::id()));
    if args.iter().any(|a| a == "--callgrind") {
        callgrind(&dir, arg("--units", 1000.0) as u64);
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    print!("{}", child("hot", true, &dir));
    let off_hot = child("hot", false, &dir);
    println!("with STRATA_TRACE=off:\n{}", off_hot.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>());

    let _ = std::fs::remove_dir_all(&dir);
    let (mut ratios, mut events, mut bytes, mut flush_ns, mut on_ns) = (Vec::new(), 0u64, 0u64, 0.0, 0.0);
    for i in 0..pairs {
        // Alternate which goes first so that drift in the machine's speed cancels.
        let run = |on: bool| {
            let before = dir_bytes(&dir);
            let out = child(&seconds.to_string(), on, &dir);
            let mut it = out.split_whitespace();
            let per_unit: f64 = it.next().unwrap().parse().unwrap();
            let units: u64 = it.next().unwrap().parse().unwrap();
            let flush_ns: f64 = it.next().unwrap().parse().unwrap();
            (per_unit, units, dir_bytes(&dir) - before, flush_ns)
        };
        let (on, off) = if i % 2 == 0 {
            let on = run(true);
            (on, run(false))
        } else {
            let off = run(false);
            (run(true), off)
        };
        ratios.push(on.0 / off.0);
        // span + counter per unit, a frame every tenth.
        events += on.1 * 2 + on.1 / 10;
        bytes += on.2;
        flush_ns += on.3;
        on_ns += on.0 * on.1 as f64;
        println!(
            "  pair {i}: on {:.1} µs/unit, off {:.1} µs/unit, ratio {:.4} ({} units)",
            on.0 / 1e3,
            off.0 / 1e3,
            on.0 / off.0,
            on.1
        );
    }
    ratios.sort_by(f64::total_cmp);
    let rate = events as f64 / (pairs as f64 * seconds);
    println!(
        "A/B workload at {rate:.0} events/s: CPU time on/off median {:.4} (range {:.4} .. {:.4}) → overhead {:+.2}%",
        ratios[pairs / 2],
        ratios[0],
        ratios[pairs - 1],
        (ratios[pairs / 2] - 1.0) * 100.0
    );
    println!(
        "flusher (drain, encode, compress, write): {:.3}% of the workload's CPU time, {:.0} ns per event",
        flush_ns / on_ns * 100.0,
        flush_ns / events as f64
    );
    println!("on disk: {:.2} bytes per event ({} events, {} bytes)", bytes as f64 / events as f64, events, bytes);
    let _ = std::fs::remove_dir_all(&dir);
}
