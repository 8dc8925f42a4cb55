//! The autotuner: times a kernel's candidate configurations on the problem at hand and keeps
//! the fastest, in memory and in a file beside the compiled kernels, so that a shape is tuned
//! once per device and architecture.
//!
//! Tuning is asked for with `STRATA_GEMM_TUNE=1` or [`Cuda::with_tuning`]; without it the
//! kernels' own rules choose (and no tuned choice is read), so a program's kernels do not
//! depend on what an earlier run measured unless it asks. Candidates run on scratch outputs,
//! never on the caller's. The file (`tuning.txt` in [`compile::cache_dir`]) is a cache: one
//! `key<TAB>choice` line per problem, appended as choices are made; a line this version cannot
//! read is ignored and that problem tuned again.
//!
//! [`compile::cache_dir`]: crate::compile::cache_dir

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};
use strata_core::kernel::Backend;
use strata_core::{Error, Result};

use crate::{Cuda, driver_err};

/// Whether the environment asks for tuning (`STRATA_GEMM_TUNE=1`).
pub(crate) fn asked_by_env() -> bool {
    std::env::var("STRATA_GEMM_TUNE").is_ok_and(|v| v == "1" || v == "on")
}

/// The choices made so far, and the file they are kept in.
pub(crate) struct Tuner {
    path: PathBuf,
    /// `None` until the file has been read.
    choices: Mutex<Option<HashMap<String, String>>>,
}

impl Tuner {
    pub(crate) fn new(path: PathBuf) -> Tuner {
        Tuner { path, choices: Mutex::new(None) }
    }

    /// The choice kept for `key`, reading the file on first use.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let mut choices = self.choices.lock().unwrap_or_else(|e| e.into_inner());
        let map = choices.get_or_insert_with(|| read(&self.path));
        map.get(key).cloned()
    }

    /// Keeps `choice` for `key`, in memory and appended to the file (a file that cannot be
    /// written only costs the next process a tuning).
    pub(crate) fn put(&self, key: &str, choice: &str) {
        let mut choices = self.choices.lock().unwrap_or_else(|e| e.into_inner());
        choices.get_or_insert_with(|| read(&self.path)).insert(key.to_owned(), choice.to_owned());
        let line = format!("{key}\t{choice}\n");
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // One write of one line in append mode: processes tuning at once interleave whole lines.
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path);
        if let Ok(mut f) = file {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// The choices in `path` (none if it is missing); the last line for a key wins.
fn read(path: &std::path::Path) -> HashMap<String, String> {
    parse(&std::fs::read_to_string(path).unwrap_or_default())
}

fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty() && !v.contains('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The index of the fastest of `n` candidates, `run(i)` queueing candidate `i` once: each runs
/// once to warm up (and compile), then three times in each of two turns, L2 emptied before
/// every timed run (by clearing a buffer twice its size) so that no operand starts there, as in
/// a model whose weights stream from memory; its time is the better turn's sum. (Timed back to
/// back, operands that fit in L2 stay there and favour the plans that reread them most: a
/// first version picked a plan 6% slower for bf16 128 × 4096 × 4096.) A candidate whose launch
/// fails, in the warm-up or a timed run, is passed over; if all fail, the first error. (A kernel
/// that faults while running is not a failed launch: its error surfaces at the next wait and
/// ends the tuning, as it would any other work on the context.)
pub(crate) fn fastest(cuda: &Cuda, n: usize, mut run: impl FnMut(usize) -> Result<()>) -> Result<usize> {
    let _span = strata_trace::span("tune");
    let e = |e| driver_err("tuning", e);
    let ev = || cuda.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(e);
    let (start, end) = (ev()?, ev()?);
    let l2 = cuda.ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE).map_err(e)?;
    let mut flush = cuda.alloc_output(2 * l2.max(1) as usize)?;
    let mut best = vec![f32::INFINITY; n];
    let mut first_err = None;
    let mut ok = vec![true; n];
    for (i, ok) in ok.iter_mut().enumerate() {
        if let Err(e) = run(i) {
            *ok = false;
            first_err.get_or_insert(e);
        }
    }
    for _ in 0..2 {
        for i in 0..n {
            let mut total = 0.0;
            for _ in 0..3 {
                if !ok[i] {
                    break;
                }
                cuda.stream.memset_zeros(flush.slice_mut()).map_err(e)?;
                start.record(&cuda.stream).map_err(e)?;
                if let Err(err) = run(i) {
                    ok[i] = false;
                    first_err.get_or_insert(err);
                    break;
                }
                end.record(&cuda.stream).map_err(e)?;
                end.synchronize().map_err(e)?;
                total += start.elapsed_ms(&end).map_err(e)?;
            }
            if ok[i] {
                best[i] = best[i].min(total);
            }
        }
    }
    let pick = (0..n).filter(|&i| ok[i]).min_by(|&a, &b| best[a].total_cmp(&best[b]));
    match (pick, first_err) {
        (Some(i), _) => Ok(i),
        (None, Some(e)) => Err(e),
        (None, None) => Err(Error::InvalidArgument { op: "tune", message: "no candidates".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_keeps_the_last_choice_and_skips_what_it_cannot_read() {
        let text = "a\tx=1\nb\tx=2\nbroken line\n\tno key\nc\t\na\tx=3\nd\te\tf\n";
        let m = parse(text);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["a"], "x=3");
        assert_eq!(m["b"], "x=2");
    }

    #[test]
    fn choices_survive_a_new_tuner_on_the_same_file() {
        let dir = std::env::temp_dir().join(format!("strata-tune-{}", std::process::id()));
        let path = dir.join("tuning.txt");
        let _ = std::fs::remove_file(&path);
        let t = Tuner::new(path.clone());
        assert_eq!(t.get("gemm k"), None);
        t.put("gemm k", "pingpong=1 cluster=1 splits=4");
        t.put("gemm j", "pingpong=0 cluster=2 splits=1");
        t.put("gemm k", "pingpong=0 cluster=1 splits=2");
        let again = Tuner::new(path.clone());
        assert_eq!(again.get("gemm k").as_deref(), Some("pingpong=0 cluster=1 splits=2"));
        assert_eq!(again.get("gemm j").as_deref(), Some("pingpong=0 cluster=2 splits=1"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
