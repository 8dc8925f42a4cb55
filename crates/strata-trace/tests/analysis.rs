//! Overview, aggregation, collection files and exports on a synthetic trace whose numbers are
//! known. `STRATA_BLESS=1` rewrites the golden JSON; `STRATA_TRACE_EXPORT=DIR` keeps the
//! exported files for the Python check (`scripts/refs/trace_export.py`).

use std::path::{Path, PathBuf};

use strata_trace::export::{Format, expected_summary, export};
use strata_trace::{Name, ProcessInfo, ProcessTrace, Record, RecordKind, StateChange, Trace, Value};

const T0: u64 = 1_795_000_000_000_000_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

fn state(ts: u64, domain: &str, label: Option<&str>, stable: Vec<(&str, Value)>, change: StateChange) -> Record {
    let fields = |f: Vec<(&str, Value)>| f.into_iter().map(|(k, v)| (Name::from(k), v)).collect();
    Record {
        ts,
        thread: 0,
        kind: RecordKind::State {
            domain: domain.into(),
            label: label.map(Name::from),
            stable: fields(stable),
            volatile: Vec::new(),
            change,
        },
    }
}

/// Ten seconds of a game: menu, then a level while a download runs, frames at 60 fps with a
/// slow frame every 50, 50 fps while playing.
fn game() -> Trace {
    let mut r = vec![
        Record { ts: T0, thread: 1, kind: RecordKind::ThreadName { name: "main".into() } },
        state(T0, "scene", Some("menu"), vec![], StateChange::Enter),
        state(
            T0 + S,
            "net",
            Some("downloading"),
            vec![("url", Value::Str("https://example.org/level3".into()))],
            StateChange::Enter,
        ),
        state(T0 + 2 * S, "scene", Some("playing"), vec![("level", Value::Int(3))], StateChange::Enter),
        Record {
            ts: T0 + 3 * S,
            thread: 0,
            kind: RecordKind::State {
                domain: "scene".into(),
                label: Some("playing".into()),
                stable: vec![],
                volatile: vec![("score".into(), Value::Float(12.5))],
                change: StateChange::Volatile,
            },
        },
        state(T0 + 5 * S, "net", None, vec![], StateChange::Enter),
        state(T0 + 8 * S, "scene", None, vec![], StateChange::Enter),
        Record { ts: T0 + 4 * S, thread: 0, kind: RecordKind::Dropped { count: 7 } },
        Record { ts: T0 + 4 * S, thread: 0, kind: RecordKind::Throttled { domain: "net".into(), count: 2 } },
    ];
    for (i, (cpu, rss)) in [(0.0, 100e6), (1.25e9, 150e6), (2.5e9, 120e6)].into_iter().enumerate() {
        let ts = T0 + i as u64 * 5 * S;
        r.push(Record { ts, thread: 0, kind: RecordKind::Counter { name: "process.cpu_ns".into(), value: cpu } });
        r.push(Record { ts, thread: 0, kind: RecordKind::Counter { name: "process.rss_bytes".into(), value: rss } });
    }
    let (mut t, mut n) = (T0, 0u64);
    while t < T0 + 10 * S {
        let playing = (T0 + 2 * S..T0 + 8 * S).contains(&t);
        t += if n % 50 == 49 {
            50 * MS
        } else if playing {
            20 * MS
        } else {
            16 * MS
        };
        n += 1;
        r.push(Record { ts: t - 3 * MS, thread: 1, kind: RecordKind::Span { name: "update".into(), dur: 3 * MS } });
        let gpu = playing.then_some(8 * MS);
        r.push(Record { ts: t, thread: 0, kind: RecordKind::Frame { cpu: 5 * MS, gpu } });
        if n % 10 == 0 {
            r.push(Record { ts: t - MS, thread: 0, kind: RecordKind::Gpu { name: "gemm".into(), dur: MS } });
            r.push(Record { ts: t - 2 * MS, thread: 1, kind: RecordKind::Instant { name: "input".into() } });
        }
    }
    // Two kernels that overlap (two streams) and an empty span: the export must still nest.
    r.push(Record { ts: T0 + 9 * S, thread: 0, kind: RecordKind::Gpu { name: "copy".into(), dur: 2 * MS } });
    r.push(Record { ts: T0 + 9 * S + MS, thread: 0, kind: RecordKind::Gpu { name: "gemm".into(), dur: 2 * MS } });
    r.push(Record { ts: T0 + 9 * S + 500 * MS, thread: 1, kind: RecordKind::Span { name: "noop".into(), dur: 0 } });
    r.sort_by_key(|r| r.ts);
    let info = ProcessInfo { pid: 4242, name: "game".into(), start_ns: T0 };
    Trace { processes: vec![ProcessTrace { info: Some(info), records: r }], window: None }
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(expected == actual, "{name} differs from the golden file (STRATA_BLESS=1 rewrites it):\n{actual}");
}

#[test]
fn overview_json_matches_the_golden_file() {
    let ov = strata_trace::overview(&game(), true);
    let p = &ov.processes[0];
    // The numbers the golden file must hold, worked out by hand from `game()`.
    assert_eq!(p.cpu_time_s, Some(2.5));
    assert_eq!((p.rss_peak_bytes, p.rss_last_bytes), (Some(150_000_000), Some(120_000_000)));
    let f = p.frames.as_ref().unwrap();
    assert_eq!(f.p50_ms, 20.0, "300 of the 533 frames are 20 ms apart");
    assert_eq!(f.count, 533);
    assert_eq!(f.p99_ms, 50.0);
    assert_eq!(f.low_1pct_fps, 20.0);
    assert_eq!((p.dropped_records, p.throttled["net"]), (7, 2));
    let states = p.states.as_ref().unwrap();
    let labels: Vec<_> = states.iter().map(|s| (s.domain.as_str(), s.label.as_str(), s.open)).collect();
    assert_eq!(labels, [("scene", "menu", false), ("net", "downloading", false), ("scene", "playing", false)]);
    assert_eq!(states[2].volatile["score"], Value::Float(12.5));
    golden("overview.json", &(serde_json::to_string_pretty(&ov).unwrap() + "\n"));
    golden("overview.txt", &ov.to_text());
}

#[test]
fn aggregate_attributes_frames_gpu_time_and_overlaps_to_states() {
    let agg = strata_trace::aggregate(&game(), "scene", None);
    let states = &agg.processes[0].states;
    assert_eq!(states.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(), ["menu", "playing"]);
    let playing = &states[1];
    assert_eq!(playing.active_s, 6.0);
    assert_eq!(playing.frames.as_ref().unwrap().p50_ms, 20.0);
    assert_eq!((playing.overlaps[0].label.as_str(), playing.overlaps[0].overlap_s), ("downloading", 3.0));
    assert!(playing.gpu_time_s > 6.0 * 50.0 * 0.008 * 0.9);
    assert_eq!(states[0].overlaps[0].overlap_s, 1.0);
    let only = strata_trace::aggregate(&game(), "scene", Some("menu"));
    assert_eq!(only.processes[0].states.len(), 1);
    golden("aggregate.json", &(serde_json::to_string_pretty(&agg).unwrap() + "\n"));
}

fn out_dir() -> PathBuf {
    let dir = std::env::var_os("STRATA_TRACE_EXPORT")
        .map_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-export"), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn collected_files_round_trip_and_exports_are_written_for_the_python_check() {
    let trace = game();
    let dir = out_dir();
    let file = dir.join("game.strace");
    strata_trace::write_file(&file, &trace).unwrap();
    let back = strata_trace::read_file(&file, &mut |w| panic!("{w}")).unwrap();
    assert_eq!(back.processes[0].records, trace.processes[0].records);
    assert_eq!(back.processes[0].info, trace.processes[0].info);
    std::fs::write(dir.join("game.pftrace"), export(&trace, Format::Perfetto)).unwrap();
    std::fs::write(dir.join("game.json"), export(&trace, Format::ChromeJson)).unwrap();
    let summary = expected_summary(&trace);
    assert_eq!(summary["slices"]["main/update"], 533);
    assert_eq!(summary["slices"]["frames/frame"], 533);
    assert_eq!(summary["states"]["state: scene"], serde_json::json!(["menu", "playing"]));
    std::fs::write(dir.join("game.expected.json"), serde_json::to_vec_pretty(&summary).unwrap()).unwrap();
    // The Chrome form parses as JSON here too; the Python check compares the contents.
    let chrome: serde_json::Value = serde_json::from_slice(&export(&trace, Format::ChromeJson)).unwrap();
    assert!(chrome["traceEvents"].as_array().unwrap().len() > 1000);
    let err = strata_trace::read_file(&dir.join("game.json"), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("game.json") && err.contains("magic"), "{err}");
}
