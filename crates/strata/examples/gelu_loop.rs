//! The element-wise chain of the `arrays` benchmark in a loop, for profilers:
//! `cargo run --release -p strata --example gelu_loop [-- compiled]`.
use strata::{Array, DType};

fn gelu(x: &Array) -> Array {
    0.5 * x * (1.0 + strata::tanh(&(0.7978845608028654 * (x + 0.044715 * x * x * x))).unwrap())
}

fn main() {
    let compiled = std::env::args().any(|a| a == "compiled");
    let x = strata::linspace(-4.0, 4.0, 1 << 20, DType::F32).unwrap();
    x.eval().unwrap();
    let f = strata::compile(|a: &[Array]| Ok(vec![gelu(&a[0])]));
    let t = std::time::Instant::now();
    for _ in 0..200 {
        let y = if compiled { f.call(std::slice::from_ref(&x)).unwrap().remove(0) } else { gelu(&x) };
        y.eval().unwrap();
    }
    println!("{:.3} ms per call", t.elapsed().as_secs_f64() * 1e3 / 200.0);
}
