//! The client side of `scripts/bench/peers.py serve`, shared by the benchmarks of every crate
//! (included with `#[path]`): a long-lived Python process that times NumPy and MLX on request.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

/// A long-lived peer process.
pub struct Peers {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub ready: Value,
    next_id: u64,
}

impl Peers {
    /// Starts the peer process, its BLAS limited to `threads` threads.
    pub fn start(root: &Path, threads: usize) -> Result<Peers, String> {
        let python = root.join("target/pyenv/bin/python");
        let script = root.join("scripts/bench/peers.py");
        if !python.exists() {
            return Err(format!(
                "{} is missing: run scripts/test once (it creates the Python environment)",
                python.display()
            ));
        }
        let threads = threads.to_string();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("serve")
            .env("OPENBLAS_NUM_THREADS", &threads)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", script.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let ready: Value = serde_json::from_str(&line).map_err(|e| format!("peer said {line:?}: {e}"))?;
        Ok(Peers { child, stdin, stdout, ready, next_id: 0 })
    }

    /// One timing of `peer` on `case`, in seconds.
    pub fn time(&mut self, case: &Value, peer: &str) -> Result<f64, String> {
        self.next_id += 1;
        let req = json!({"id": self.next_id, "case": case, "peer": peer, "reps": 1});
        writeln!(self.stdin, "{req}").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let reply: Value = serde_json::from_str(&line).map_err(|e| format!("peer said {line:?}: {e}"))?;
        if let Some(e) = reply.get("error") {
            return Err(format!("{peer}: {e}"));
        }
        Ok(reply["seconds"][0].as_f64().ok_or("no seconds in the reply")?)
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The median (NaN for none).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}
