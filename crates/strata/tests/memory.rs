//! Memory over a long loop, in its own test binary: `live_nodes` counts every thread's nodes,
//! so other tests running beside it would make the count move.

use strata::*;

#[test]
fn memory_stays_flat_over_a_long_loop() {
    let mut x = zeros(&[64, 64], DType::F32).unwrap();
    let w = full(&[64, 64], 0.001, DType::F32).unwrap();
    x.eval().unwrap();
    let mut counts = Vec::new();
    for step in 0..300 {
        x = (&x + &matmul(&x, &w).unwrap()) * 0.5 + 1.0;
        x.eval().unwrap();
        if step % 100 == 99 {
            counts.push(live_nodes());
        }
    }
    assert!(counts.windows(2).all(|w| w[1] <= w[0]), "live nodes grew: {counts:?}");
    // A pending chain of a million nodes drops without overflowing the stack.
    let mut y = Array::scalar(0.0f32);
    for _ in 0..1_000_000 {
        y = &y + 1.0;
    }
    drop(y);
}
