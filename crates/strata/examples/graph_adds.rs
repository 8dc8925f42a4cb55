//! The graph-overhead case of the `arrays` benchmark in a loop, for profilers and for the
//! flight recorder's cost per kernel (`STRATA_TRACE=off` to compare):
//! `cargo run --release -p strata --example graph_adds [-- pause]`.
use strata::Array;

fn main() {
    let one = Array::scalar(1.0f32);
    // `pause` sleeps 200 ms before each chain, as the benchmark harness does.
    let pause = std::env::args().any(|a| a == "pause");
    let mut times = Vec::new();
    for _ in 0..40 {
        if pause {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let t = std::time::Instant::now();
        let mut x = Array::scalar(0.0f32);
        for _ in 0..10_000 {
            x = &x + &one;
        }
        x.eval().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6 / 10_000.0);
    }
    times.sort_by(f64::total_cmp);
    println!("{:.3} µs per op best, {:.3} median (40 chains of 10,000 adds)", times[0], times[20]);
}
