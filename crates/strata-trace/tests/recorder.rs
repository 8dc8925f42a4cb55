//! The recorder end to end: events through the rings into segment files and back, state
//! throttling with a hand-moved clock, retention, crashes, several processes, damaged files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use strata_trace::{
    Config, DomainOptions, ManualClock, Metadata, Outcome, ProcessFilter, RecordKind, Retention, SegmentKind, Store,
    Trace, Value,
};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The recorder of this test process (one per process), writing into a fresh directory.
fn recorder_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("recorder");
        let config = Config { dir: dir.clone(), flush_interval: Duration::from_millis(50), ..Config::default() };
        strata_trace::init(config).expect("the recorder starts with a fresh directory");
        dir
    })
}

fn load_own() -> Trace {
    strata_trace::flush().unwrap();
    let store = Store::new(recorder_dir());
    let filter = ProcessFilter::Pid(std::process::id());
    store.load(SegmentKind::Detail, None, &filter, &mut |_, _| {}, &mut |w| panic!("warning: {w}")).unwrap()
}

strata_trace::metadata! {
    #[derive(Clone)]
    struct Level { index: u32, name: String }
}
strata_trace::metadata! {
    #[derive(Clone)]
    struct Progress { done: f64 }
}

#[test]
fn events_from_several_threads_come_back_from_disk() {
    recorder_dir();
    let workers: Vec<_> = (0..3)
        .map(|t| {
            std::thread::Builder::new()
                .name(format!("worker-{t}"))
                .spawn(move || {
                    for i in 0..1000 {
                        let _s = strata_trace::span("roundtrip.work");
                        strata_trace::counter("roundtrip.i", f64::from(i));
                    }
                })
                .unwrap()
        })
        .collect();
    for _ in 0..5 {
        strata_trace::frame_end(Duration::from_micros(1500), Some(Duration::from_micros(700)));
        strata_trace::gpu_kernel("roundtrip.kernel", strata_trace::now_ns(), Duration::from_micros(300));
        strata_trace::instant("roundtrip.tick");
    }
    workers.into_iter().for_each(|w| w.join().unwrap());
    let trace = load_own();
    let p = &trace.processes[0];
    let count = |f: &dyn Fn(&RecordKind) -> bool| p.records.iter().filter(|r| f(&r.kind)).count();
    assert_eq!(count(&|k| matches!(k, RecordKind::Span { name, .. } if &**name == "roundtrip.work")), 3000);
    let sum: f64 = p
        .records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Counter { name, value } if &**name == "roundtrip.i" => Some(*value),
            _ => None,
        })
        .sum();
    assert_eq!(sum, 3.0 * 999.0 * 1000.0 / 2.0);
    assert_eq!(count(&|k| matches!(k, RecordKind::Instant { name } if &**name == "roundtrip.tick")), 5);
    assert!(count(&|k| matches!(k, RecordKind::Gpu { name, dur: 300_000 } if &**name == "roundtrip.kernel")) == 5);
    let names: Vec<_> = p
        .records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::ThreadName { name } => Some(name.to_string()),
            _ => None,
        })
        .collect();
    for t in 0..3 {
        assert!(names.contains(&format!("worker-{t}")), "{names:?}");
    }
    let ov = strata_trace::overview(&trace, false);
    let frames = ov.processes[0].frames.as_ref().expect("frames");
    assert!(frames.count >= 5);
    assert!(ov.processes[0].cpu_time_s.is_some() && ov.processes[0].rss_peak_bytes.unwrap() > 0);
    assert!(p.records.windows(2).all(|w| w[0].ts <= w[1].ts), "records come back in time order");
}

#[test]
fn states_are_recorded_and_validated() {
    recorder_dir();
    let d = strata_trace::state_domain::<Level, Progress>("valid.scene").unwrap();
    let level = |i| Level { index: i, name: format!("level {i}") };
    assert_eq!(d.transition("loading", level(1), Progress { done: 0.0 }).unwrap(), Outcome::Recorded);
    assert_eq!(d.transition("loading", level(1), Progress { done: 0.5 }).unwrap(), Outcome::Unchanged);
    assert_eq!(d.update_volatile(Progress { done: 0.75 }).unwrap(), Outcome::Recorded);
    assert_eq!(d.transition("loading", level(2), Progress { done: 0.0 }).unwrap(), Outcome::Recorded);
    let err = d.transition("", level(1), Progress { done: 0.0 }).unwrap_err().to_string();
    assert!(err.contains("valid.scene") && err.contains("label"), "{err}");
    assert_eq!(d.clear().unwrap(), Outcome::Recorded);
    assert_eq!(d.clear().unwrap(), Outcome::Unchanged);
    let err = d.update_volatile(Progress { done: 1.0 }).unwrap_err().to_string();
    assert!(err.contains("no current state"), "{err}");
    // The same name with other metadata types, and metadata whose value types change.
    let err = strata_trace::state_domain::<(), ()>("valid.scene").err().unwrap().to_string();
    assert!(err.contains("other metadata types"), "{err}");
    assert!(strata_trace::state_domain::<Level, Progress>("valid.scene").is_ok());
    struct Shifty(bool);
    impl Metadata for Shifty {
        fn fields(&self) -> Vec<(&'static str, Value)> {
            vec![("v", if self.0 { Value::Int(1) } else { Value::Str("one".into()) })]
        }
    }
    let s = strata_trace::state_domain::<Shifty, ()>("valid.shifty").unwrap();
    s.transition("a", Shifty(true), ()).unwrap();
    let err = s.transition("b", Shifty(false), ()).unwrap_err().to_string();
    assert!(err.contains("changed shape"), "{err}");

    let trace = load_own();
    let states: Vec<_> =
        strata_trace::state_intervals(&trace.processes[0]).into_iter().filter(|i| i.domain == "valid.scene").collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert_eq!(states[0].label, "loading");
    assert_eq!(states[0].stable["index"], Value::Int(1));
    assert_eq!(states[0].volatile["done"], Value::Float(0.75));
    assert_eq!(states[1].stable["name"], Value::Str("level 2".into()));
    assert!(!states[1].open, "cleared");
}

#[test]
fn throttled_changes_coalesce_and_the_last_one_is_written_when_a_token_frees() {
    recorder_dir();
    let clock = ManualClock::new(strata_trace::now_ns());
    let options = DomainOptions { burst: 2, per_second: 1.0, clock: Arc::new(clock.clone()) };
    let d = strata_trace::state_domain_with::<(), ()>("throttle.menu", options).unwrap();
    let outcomes: Vec<_> = ["a", "b", "c", "d", "e"].iter().map(|l| d.transition(l, (), ()).unwrap()).collect();
    use Outcome::*;
    assert_eq!(outcomes, [Recorded, Recorded, Throttled, Throttled, Throttled]);
    assert_eq!(d.dropped(), 2, "c and d were replaced while pending");
    assert_eq!(d.current().as_deref(), Some("e"));
    clock.advance(Duration::from_millis(500));
    assert!(!d.poll(), "half a token is not a token");
    clock.advance(Duration::from_millis(500));
    assert!(d.poll(), "e is written once a token frees");
    let trace = load_own();
    let p = &trace.processes[0];
    let labels: Vec<_> =
        strata_trace::state_intervals(p).into_iter().filter(|i| i.domain == "throttle.menu").map(|i| i.label).collect();
    assert_eq!(labels, ["a", "b", "e"]);
    let throttled: u64 = p
        .records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Throttled { domain, count } if &**domain == "throttle.menu" => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(throttled, 2);
}

fn set_age(path: &Path, now_ns: u64, age: Duration) {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(now_ns) - age;
    std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn retention_deletes_whole_files_by_age_and_size() {
    let dir = scratch("retention");
    let store = Store::new(&dir);
    let now: u64 = 1_900_000_000_000_000_000;
    std::fs::create_dir_all(dir.join("detail")).unwrap();
    std::fs::create_dir_all(dir.join("rollup")).unwrap();
    let make = |kind: &str, hours_ago: u64, bytes: usize| {
        let start = now - hours_ago * 3_600_000_000_000;
        let path = dir.join(kind).join(format!("{:014}-42-{hours_ago}.strace", start / 1_000_000));
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        set_age(&path, now, Duration::from_secs(hours_ago * 3600));
        path
    };
    let ancient = make("detail", 30, 10);
    let big_old = make("detail", 5, 600);
    let mid = make("detail", 3, 300);
    let fresh = make("detail", 0, 300);
    let rollup_old = make("rollup", 8 * 24, 10);
    let rollup_young = make("rollup", 6 * 24, 10);
    let retention = Retention {
        detail_age: Duration::from_secs(24 * 3600),
        detail_bytes: 1000,
        rollup_age: Duration::from_secs(7 * 86400),
    };
    let report = store.prune(&retention, now, &[]).unwrap();
    assert!(!ancient.exists() && !big_old.exists() && !rollup_old.exists());
    assert!(mid.exists() && fresh.exists() && rollup_young.exists());
    assert_eq!((report.files, report.bytes), (3, 620));
    // A file the caller is writing survives even when over budget.
    let tight = Retention { detail_bytes: 100, ..retention };
    let report = store.prune(&tight, now + 60_000_000_000, std::slice::from_ref(&mid)).unwrap();
    assert!(mid.exists() && !fresh.exists());
    assert_eq!(report.files, 1);
}

const CHILD_ENV: &str = "STRATA_TRACE_TEST_CHILD";

/// Not a test on its own: the body of the child processes the tests below start.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD_ENV) else { return };
    let dir = PathBuf::from(std::env::var("STRATA_TRACE_DIR").unwrap());
    let config = Config { dir, flush_interval: Duration::from_millis(20), ..Config::default() };
    strata_trace::init(config).unwrap();
    let net = strata_trace::state_domain::<(), ()>("child.net").unwrap();
    net.transition("busy", (), ()).unwrap();
    match mode.as_str() {
        "frames" => {
            for _ in 0..200 {
                std::thread::sleep(Duration::from_millis(2));
                strata_trace::frame_end(Duration::from_millis(1), Some(Duration::from_micros(500)));
            }
            strata_trace::flush().unwrap();
        }
        "forever" => loop {
            strata_trace::instant("child.tick");
            std::thread::sleep(Duration::from_micros(200));
        },
        n => {
            for _ in 0..n.parse::<u32>().unwrap() {
                strata_trace::instant("child.tick");
                std::thread::sleep(Duration::from_micros(20));
            }
            strata_trace::flush().unwrap();
        }
    }
}

fn child(dir: &Path, mode: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env("STRATA_TRACE_DIR", dir)
        .env_remove("STRATA_TRACE")
        .stdout(std::process::Stdio::null());
    c
}

fn ticks(trace: &Trace, pid: u32) -> Vec<u64> {
    let p = trace.processes.iter().find(|p| p.info().pid == pid).expect("the child's records");
    p.records
        .iter()
        .filter(|r| matches!(&r.kind, RecordKind::Instant { name } if &**name == "child.tick"))
        .map(|r| r.ts)
        .collect()
}

#[test]
fn two_processes_record_into_one_directory_at_once() {
    let dir = scratch("two-processes");
    let mut kids: Vec<_> = (0..2).map(|_| child(&dir, "3000").spawn().unwrap()).collect();
    let pids: Vec<u32> = kids.iter().map(|k| k.id()).collect();
    for k in &mut kids {
        assert!(k.wait().unwrap().success());
    }
    let trace = Store::new(&dir)
        .load(SegmentKind::Detail, None, &ProcessFilter::Any, &mut |_, _| {}, &mut |w| panic!("{w}"))
        .unwrap();
    assert_eq!(trace.processes.len(), 2);
    for pid in pids {
        assert_eq!(ticks(&trace, pid).len(), 3000, "every event of process {pid}");
    }
}

#[test]
fn a_killed_process_loses_at_most_the_last_flush_and_torn_files_are_skipped() {
    let dir = scratch("kill");
    let mut kid = child(&dir, "forever").spawn().unwrap();
    let detail = dir.join("detail");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let bytes: u64 =
            std::fs::read_dir(&detail).map(|d| d.flatten().map(|e| e.metadata().unwrap().len()).sum()).unwrap_or(0);
        if bytes > 4000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    kid.kill().unwrap(); // SIGKILL: no destructor, no final flush
    let killed_at = strata_trace::now_ns();
    kid.wait().unwrap();
    let store = Store::new(&dir);
    let mut warnings = Vec::new();
    let trace =
        store.load(SegmentKind::Detail, None, &ProcessFilter::Any, &mut |_, _| {}, &mut |w| warnings.push(w)).unwrap();
    let t = ticks(&trace, kid.id());
    assert!(t.len() > 100, "{} ticks", t.len());
    let lost_ms = (killed_at - t.last().unwrap()) as f64 / 1e6;
    // 20 ms flush interval; allow for a loaded machine scheduling the flusher late.
    assert!(lost_ms < 500.0, "the last {lost_ms} ms were lost");

    // Tear the segment in the middle of its last chunk and add a file that is not a trace.
    let file = store.files(SegmentKind::Detail).unwrap().pop().unwrap();
    let bytes = std::fs::read(&file.path).unwrap();
    std::fs::write(&file.path, &bytes[..bytes.len() - 5]).unwrap();
    std::fs::write(detail.join("00000000000001-1-1.strace"), b"not a trace at all").unwrap();
    let mut warnings = Vec::new();
    let again =
        store.load(SegmentKind::Detail, None, &ProcessFilter::Any, &mut |_, _| {}, &mut |w| warnings.push(w)).unwrap();
    assert!(ticks(&again, kid.id()).len() + 2000 > t.len(), "only the torn chunk is lost");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("torn")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("magic")), "{warnings:?}");
    // The state the child entered before its first flush is visible in every segment.
    let p = again.processes.iter().find(|p| p.info().pid == kid.id()).unwrap();
    assert!(strata_trace::state_intervals(p).iter().any(|i| i.domain == "child.net" && i.label == "busy"));
}

#[test]
fn a_window_opens_with_the_states_active_at_its_start() {
    recorder_dir();
    let d = strata_trace::state_domain::<(), ()>("window.mode").unwrap();
    d.transition("before", (), ()).unwrap();
    strata_trace::flush().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let start = strata_trace::now_ns();
    strata_trace::instant("window.inside");
    let store = Store::new(recorder_dir());
    strata_trace::flush().unwrap();
    let filter = ProcessFilter::Pid(std::process::id());
    let end = strata_trace::now_ns();
    let trace =
        store.load(SegmentKind::Detail, Some((start, end)), &filter, &mut |_, _| {}, &mut |w| panic!("{w}")).unwrap();
    let p = &trace.processes[0];
    assert!(p.records.iter().all(|r| r.ts >= start && r.ts <= end));
    let i = strata_trace::state_intervals(p).into_iter().find(|i| i.domain == "window.mode").expect("snapshot");
    assert_eq!((i.label.as_str(), i.start_ns), ("before", start));
    assert!(store.load(SegmentKind::Detail, Some((end, start)), &filter, &mut |_, _| {}, &mut |_| {}).is_err());
}

#[test]
fn frames_roll_up_per_second_under_the_active_states() {
    let dir = scratch("rollup");
    assert!(child(&dir, "frames").status().unwrap().success());
    let trace = Store::new(&dir)
        .load(SegmentKind::Rollup, None, &ProcessFilter::Any, &mut |_, _| {}, &mut |w| panic!("{w}"))
        .unwrap();
    let rows = strata_trace::rollup_summary(&trace);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].states, ["child.net=busy"]);
    assert_eq!(rows[0].frames, 200);
    assert!((rows[0].gpu_time_s - 0.1).abs() < 1e-9, "{rows:?}");
    // Frames 2 ms apart (sleep plus scheduling): the median bucket is a few ms at most.
    let p50 = rows[0].p50_ms.unwrap();
    assert!((2.0..12.0).contains(&p50), "{rows:?}");
}
