//! `strata trace ...` end to end: a store written by a real recording child, read back through
//! the command line; the JSON the command prints equals the library's; bad input is an error
//! with a message and a failing exit status, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn strata(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("trace")
        .args(args)
        .env("STRATA_TRACE_DIR", dir)
        .env("STRATA_TRACE", "off") // the command itself records nothing into the store it reads
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a small recording into `dir` the way a program would: through the recorder, in a
/// child process (the recorder is one per process).
fn record(dir: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "recording_child", "--nocapture", "--test-threads=1"])
        .env("STRATA_TRACE_CLI_CHILD", "1")
        .env("STRATA_TRACE_DIR", dir)
        .env_remove("STRATA_TRACE")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Not a test on its own: the recording child of the tests below.
#[test]
fn recording_child() {
    if std::env::var_os("STRATA_TRACE_CLI_CHILD").is_none() {
        return;
    }
    let mode = strata_trace::state_domain::<(), ()>("mode").unwrap();
    for (label, frames) in [("menu", 20), ("play", 30)] {
        mode.transition(label, (), ()).unwrap();
        for _ in 0..frames {
            let _s = strata_trace::span("work");
            std::thread::sleep(std::time::Duration::from_millis(1));
            strata_trace::frame_end(std::time::Duration::from_micros(900), None);
        }
    }
    strata_trace::flush().unwrap();
}

#[test]
fn collect_overview_aggregate_and_export_through_the_command_line() {
    let dir = scratch("cli-store");
    record(&dir);
    let file = dir.join("run.strace");
    let f = file.to_str().unwrap();
    ok(&strata(&dir, &["collect", "--last", "10m", "--process", "trace_cli", "-o", f]));

    let text = ok(&strata(&dir, &["overview", f, "--json", "--include-state-transitions"]));
    let trace = strata_trace::read_file(&file, &mut |w| panic!("{w}")).unwrap();
    let library = serde_json::to_string_pretty(&strata_trace::overview(&trace, true)).unwrap();
    assert_eq!(text, library + "\n", "the command prints what the library computes");
    let printed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let p = &printed["processes"][0];
    assert_eq!(p["frames"]["count"], 50);
    assert!(p["cpu_time_s"].is_f64() && p["rss_peak_bytes"].is_u64(), "{p}");
    assert_eq!(p["top_spans"][0]["name"], "work");
    let labels: Vec<_> = p["states"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["menu", "play"]);

    let agg: serde_json::Value =
        serde_json::from_str(&ok(&strata(&dir, &["aggregate", f, "--domain", "mode", "--json"]))).unwrap();
    let states = agg["processes"][0]["states"].as_array().unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(states[1]["frames"]["count"], 30);

    let text = ok(&strata(&dir, &["overview", "--last", "10m"]));
    assert!(text.contains("trace_cli") && text.contains("frames"), "{text}");
    let rollups = ok(&strata(&dir, &["overview", "--rollups", "--last", "1h", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&rollups).unwrap();
    let frames: u64 = rows.as_array().unwrap().iter().map(|r| r["frames"].as_u64().unwrap()).sum();
    assert_eq!(frames, 50);

    for format in ["perfetto", "chrome-json"] {
        let out = dir.join(format!("run.{format}"));
        ok(&strata(&dir, &["export", f, "--format", format, "-o", out.to_str().unwrap()]));
        assert!(std::fs::metadata(&out).unwrap().len() > 100);
    }
    let status: serde_json::Value = serde_json::from_str(&ok(&strata(&dir, &["status", "--json"]))).unwrap();
    assert!(status["store"]["detail_files"].as_u64().unwrap() >= 1);
    let pruned: serde_json::Value = serde_json::from_str(&ok(&strata(&dir, &["prune", "--json"]))).unwrap();
    assert_eq!(pruned["files"], 0, "nothing is old enough to delete");
}

#[test]
fn bad_input_is_an_error_with_a_message() {
    let dir = scratch("cli-bad");
    let junk = dir.join("junk.strace");
    std::fs::write(&junk, b"definitely not a trace").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["overview", "--last", "5 parsecs"], "not a duration"),
        (vec!["overview", "--start", "2026-13-40"], "not a time"),
        (vec!["overview", "--start", "2026-11-27T10:00:00Z", "--end", "2026-11-27T09:00:00Z"], "ends before it starts"),
        (vec!["collect", "-o", "x.strace"], "needs a window"),
        (vec!["export", "/nonexistent/file.strace"], "No such file"),
        (vec!["overview", junk.to_str().unwrap()], "magic"),
        (vec!["export", junk.to_str().unwrap(), "--format", "svg"], "unknown export format"),
    ];
    for (args, message) in cases {
        let out = strata(&dir, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // An empty store is not an error: there is just nothing in the window.
    assert!(ok(&strata(&dir, &["overview", "--last", "1h"])).contains("no records"));
}
