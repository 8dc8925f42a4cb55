//! Training a classifier end to end: a 3-class spiral the example generates, an MLP
//! (`nn::Sequential` of `Linear` and ReLU), cross-entropy, AdamW with a warm-up and cosine
//! schedule, mini-batches shuffled every epoch, a progress bar. Writes `train_mlp.png` (the
//! decision regions with the points, and the loss curve), saves the trained parameters as
//! safetensors and checks that they load back to the same predictions.
//!
//! `cargo run --release -p strata --example train_mlp [-- OUT_DIR]`

use std::path::{Path, PathBuf};

use strata::nn::{self, Module};
use strata::optim::{self, Optimizer};
use strata::{Array, Result};

#[path = "common/picture.rs"]
mod picture;

/// Passes over the data.
pub const EPOCHS: usize = 60;
const CLASSES: usize = 3;
const PER_CLASS: usize = 200;
const BATCH: usize = 64;

/// What training reached.
pub struct Summary {
    /// Accuracy on the training points after the last epoch.
    pub accuracy: f32,
    /// The mean loss of the first and last epochs.
    pub loss: (f32, f32),
    /// Parameters in the model.
    pub parameters: usize,
    /// Where the parameters were saved.
    pub weights: PathBuf,
}

/// Three interleaved spiral arms with a little noise (deterministic).
fn spiral() -> (Vec<f32>, Vec<u32>) {
    let (mut xy, mut label) = (Vec::new(), Vec::new());
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
    };
    for c in 0..CLASSES {
        for i in 0..PER_CLASS {
            let r = i as f32 / PER_CLASS as f32;
            let t = c as f32 * 4.0 + r * 4.0 + noise() * 0.4;
            xy.extend([r * t.sin(), r * t.cos()]);
            label.push(c as u32);
        }
    }
    (xy, label)
}

fn model() -> Result<nn::Sequential> {
    Ok(nn::Sequential::new()
        .push(nn::Linear::new(2, 64, true)?)
        .push(nn::Activation::Relu)
        .push(nn::Linear::new(64, 64, true)?)
        .push(nn::Activation::Relu)
        .push(nn::Linear::new(64, CLASSES, true)?))
}

/// Trains, draws and saves; returns the picture's path and a summary.
pub fn run(dir: &Path, progress: bool) -> Result<(PathBuf, Summary)> {
    strata::random::seed(7);
    let (xy, label) = spiral();
    let n = label.len();
    let x = Array::from_slice(&xy, &[n, 2])?;
    let y = Array::from_slice(&label, &[n])?;
    let mut net = model()?;
    let steps_per_epoch = n.div_ceil(BATCH);
    let total = EPOCHS * steps_per_epoch;
    let lr = optim::join_schedules(
        vec![optim::linear_schedule(0.0, 1e-2, 50), optim::cosine_decay(1e-2, total - 50, 1e-4)],
        &[50],
    );
    let mut opt = optim::adamw(lr, 1e-4);
    let step =
        nn::value_and_grad(|m: &nn::Sequential, a: &[Array]| nn::losses::cross_entropy(&m.forward(&a[0])?, &a[1], 0.0));
    let bar = if progress { indicatif::ProgressBar::new(EPOCHS as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("  training {bar:30} epoch {pos}/{len} loss {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut curve = Vec::with_capacity(total);
    let mut epoch_means = Vec::with_capacity(EPOCHS);
    for _ in 0..EPOCHS {
        let order = strata::random::permutation(n, None)?;
        let (xs, ys) = (strata::take(&x, &order, Some(0))?, strata::take(&y, &order, Some(0))?);
        let mut sum = 0.0;
        for b in 0..steps_per_epoch {
            let (lo, hi) = ((b * BATCH) as isize, ((b + 1) * BATCH).min(n) as isize);
            let batch = [strata::slice_axis(&xs, 0, lo, hi)?, strata::slice_axis(&ys, 0, lo, hi)?];
            let (loss, grads) = step(&net, &batch)?;
            let params = opt.update(&net.trainable_parameters(), &grads)?;
            net.update(&params)?;
            let mut to_eval: Vec<&Array> = params.leaves();
            to_eval.push(&loss);
            strata::eval_all(&to_eval)?;
            let l = loss.item::<f32>()?;
            curve.push(l);
            sum += l;
        }
        let mean = sum / steps_per_epoch as f32;
        epoch_means.push(mean);
        bar.set_message(format!("{mean:.4}"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let logits = net.forward(&x)?;
    let accuracy = nn::losses::accuracy(&logits, &y)?;

    // Save, load into a fresh model, and check the predictions are the same.
    let weights = dir.join("train_mlp.safetensors");
    strata::io::save_tree(&weights, &net.parameters())?;
    let mut again = model()?;
    again.update(&strata::io::load_tree(&weights, &again.parameters())?)?;
    if again.forward(&x)?.to_vec::<f32>()? != logits.to_vec::<f32>()? {
        return Err(strata::Error::InvalidArgument {
            op: "train_mlp",
            message: "the reloaded model predicts differently".into(),
        });
    }

    let path = dir.join("train_mlp.png");
    draw(&path, &net, &xy, &label, &curve, &epoch_means)?;
    let summary = Summary {
        accuracy,
        loss: (epoch_means[0], epoch_means[EPOCHS - 1]),
        parameters: net.num_parameters(),
        weights,
    };
    Ok((path, summary))
}

/// Left: the class the model picks at every pixel (light) with the points (dark). Right: the
/// loss of every step (light) and each epoch's mean (dark), log scale, a grid line per decade.
fn draw(path: &Path, net: &nn::Sequential, xy: &[f32], label: &[u32], curve: &[f32], epochs: &[f32]) -> Result<()> {
    let (side, plot_w) = (480usize, 480usize);
    let mut c = picture::Canvas::new(side + plot_w, side, [255, 255, 255]);
    let light = [[255, 214, 204], [204, 226, 255], [214, 245, 214]];
    let dark = [[200, 50, 30], [30, 90, 200], [40, 150, 60]];
    let to_px = |v: f32| ((v + 1.1) / 2.2 * side as f32) as f64;
    let grid: Vec<f32> = (0..side * side)
        .flat_map(|k| {
            let (px, py) = ((k % side) as f32, (k / side) as f32);
            [px / side as f32 * 2.2 - 1.1, 1.1 - py / side as f32 * 2.2]
        })
        .collect();
    let pred = strata::argmax(&net.forward(&Array::from_slice(&grid, &[side * side, 2])?)?, Some(-1), false)?;
    for (k, &p) in pred.to_vec::<u32>()?.iter().enumerate() {
        c.set((k % side) as i64, (k / side) as i64, light[p as usize]);
    }
    for (p, &l) in xy.chunks(2).zip(label) {
        c.dot(to_px(p[0]), side as f64 - to_px(p[1]), 3, dark[l as usize]);
    }
    let (x0, x1, top, bottom) = ((side + 40) as f64, (side + plot_w - 20) as f64, 20.0, (side - 30) as f64);
    let (lo, hi) = (-3.0f64, 1.0f64);
    for d in 0..=((hi - lo) as i32) {
        let yy = top + (bottom - top) * d as f64 / (hi - lo);
        c.line((x0, yy), (x1, yy), [225, 225, 225]);
    }
    c.line((x0, top), (x0, bottom), [120, 120, 120]);
    c.line((x0, bottom), (x1, bottom), [120, 120, 120]);
    let sy = |v: f32| top + (bottom - top) * (hi - (v.max(1e-6) as f64).log10().clamp(lo, hi)) / (hi - lo);
    let sx = |k: usize| x0 + (x1 - x0) * k as f64 / curve.len().max(1) as f64;
    for k in 1..curve.len() {
        c.line((sx(k - 1), sy(curve[k - 1])), (sx(k), sy(curve[k])), [170, 195, 235]);
    }
    let per = curve.len() / epochs.len().max(1);
    let ex = |e: usize| sx(e * per + per / 2);
    for e in 1..epochs.len() {
        c.line((ex(e - 1), sy(epochs[e - 1])), (ex(e), sy(epochs[e])), [20, 60, 160]);
    }
    c.save(path).map_err(|e| strata::Error::InvalidArgument {
        op: "train_mlp",
        message: format!("writing {}: {e}", path.display()),
    })
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let t = std::time::Instant::now();
    let (path, s) = run(&dir, true)?;
    println!(
        "wrote {} ({} parameters, {EPOCHS} epochs, {:.2} s on {}): loss {:.3} -> {:.4}, accuracy {:.1}%; weights in {}",
        path.display(),
        s.parameters,
        t.elapsed().as_secs_f64(),
        strata::default_device(),
        s.loss.0,
        s.loss.1,
        100.0 * s.accuracy,
        s.weights.display()
    );
    Ok(())
}
