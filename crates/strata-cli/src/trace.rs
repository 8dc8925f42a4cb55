//! `strata trace ...`: look back at what the flight recorder kept.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use strata_trace::export::Format;
use strata_trace::{ProcessFilter, SegmentKind, Store, Trace, TraceError};

#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// The data directory (default: $STRATA_TRACE_DIR, else the user's data directory).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
}

#[derive(ClapArgs, Clone, Default)]
struct Window {
    /// The last DURATION before now (e.g. 90s, 5h, 1h30m, 2d).
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["start", "end"])]
    last: Option<String>,
    /// Start of the window: RFC 3339 (2026-11-27T03:00:00Z), Unix seconds, or -DURATION.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// End of the window (default: now).
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Only this process: a pid, or part of the executable's name.
    #[arg(long, value_name = "P")]
    process: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Gather a window of the store into one self-contained trace file.
    Collect {
        #[command(flatten)]
        window: Window,
        /// The trace file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Per process: CPU time, memory, frame rate and frame-time percentiles, GPU time, states.
    Overview {
        /// A collected trace file (default: the store; the last hour unless a window is given).
        file: Option<PathBuf>,
        #[command(flatten)]
        window: Window,
        /// Print JSON (schema in docs/trace.md).
        #[arg(long)]
        json: bool,
        /// List every state with its start and end.
        #[arg(long)]
        include_state_transitions: bool,
        /// Summarise the per-second rollups (kept for days) instead of the detail.
        #[arg(long)]
        rollups: bool,
    },
    /// Frame rate and GPU time while each state of a domain was active, and what overlapped.
    Aggregate {
        /// A collected trace file (default: the store; the last hour unless a window is given).
        file: Option<PathBuf>,
        /// The state domain.
        #[arg(long)]
        domain: String,
        /// Only this state.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        window: Window,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a trace file for Perfetto (ui.perfetto.dev) or chrome://tracing.
    Export {
        /// The trace file (from `collect`, or a segment).
        file: PathBuf,
        /// perfetto or chrome-json.
        #[arg(long, default_value = "perfetto")]
        format: String,
        /// Where to write (default: FILE with .pftrace or .json).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Disk use, retention and recording settings of the store.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete what the retention rules no longer keep.
    Prune {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn window(w: &Window, default_last: Option<&str>) -> Result<Option<(u64, u64)>, TraceError> {
    let now = strata_trace::now_ns();
    let end = w.end.as_deref().map(|t| strata_trace::time::parse_time(t, now)).transpose()?.unwrap_or(now);
    let last = w.last.as_deref().or(if w.start.is_none() { default_last } else { None });
    let start = match (last, &w.start) {
        (Some(d), _) => Some(end.saturating_sub(strata_trace::time::parse_duration(d)?.as_nanos() as u64)),
        (None, Some(t)) => Some(strata_trace::time::parse_time(t, now)?),
        (None, None) => None,
    };
    match start {
        Some(s) if s > end => Err(TraceError::Usage("the window ends before it starts".into())),
        Some(s) => Ok(Some((s, end))),
        None => Ok(None),
    }
}

fn filter(w: &Window) -> ProcessFilter {
    w.process.as_deref().map_or(ProcessFilter::Any, ProcessFilter::parse)
}

fn warn(msg: String) {
    eprintln!("warning: {msg}");
}

/// Loads a window from the store with a progress bar over its files.
fn load(
    store: &Store,
    kind: SegmentKind,
    window: Option<(u64, u64)>,
    filter: &ProcessFilter,
) -> Result<Trace, TraceError> {
    let bar = ProgressBar::hidden();
    let mut started = false;
    let mut progress = |done: usize, total: usize| {
        if !started && total > 4 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} files").unwrap());
            bar.set_message("reading segments");
            bar.set_length(total as u64);
            started = true;
        }
        bar.set_position(done as u64);
    };
    let mut warnings = Vec::new();
    let trace = store.load(kind, window, filter, &mut progress, &mut |w| warnings.push(w))?;
    bar.finish_and_clear();
    warnings.into_iter().for_each(warn);
    Ok(trace)
}

fn from_file_or_store(
    store: &Store,
    file: &Option<PathBuf>,
    w: &Window,
    kind: SegmentKind,
) -> Result<Trace, TraceError> {
    match file {
        Some(path) => Ok(strata_trace::read_file(path, &mut warn)?.select(window(w, None)?, &filter(w))),
        None => load(store, kind, window(w, Some("1h"))?, &filter(w)),
    }
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("reports serialise"));
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = strata_trace::Config::from_env();
    if let Some(dir) = &args.dir {
        config.dir = dir.clone();
    }
    let store = Store::new(&config.dir);
    match &args.command {
        Command::Collect { window: w, output } => {
            let Some(win) = window(w, None)? else {
                return Err("collect needs a window: --last DURATION or --start TIME [--end TIME]".into());
            };
            let trace = load(&store, SegmentKind::Detail, Some(win), &filter(w))?;
            let bytes = strata_trace::write_file(output, &trace)?;
            let records: usize = trace.processes.iter().map(|p| p.records.len()).sum();
            eprintln!(
                "wrote {} ({}): {} processes, {records} records, {} .. {}",
                output.display(),
                human_bytes(bytes),
                trace.processes.len(),
                strata_trace::time::format_utc(win.0),
                strata_trace::time::format_utc(win.1)
            );
        }
        Command::Overview { file, window: w, json, include_state_transitions, rollups } => {
            if *rollups {
                let trace = if file.is_some() {
                    from_file_or_store(&store, file, w, SegmentKind::Rollup)?
                } else {
                    load(&store, SegmentKind::Rollup, window(w, Some("7d"))?, &filter(w))?
                };
                let rows = strata_trace::rollup_summary(&trace);
                if *json {
                    print_json(&rows);
                } else {
                    if rows.is_empty() {
                        println!("no rollups in this window");
                    }
                    for r in rows {
                        let states = if r.states.is_empty() { "(no state)".to_owned() } else { r.states.join(", ") };
                        let q = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("≤{v:.1} ms"));
                        println!(
                            "{} (pid {}) {states}: {} s, {} frames, p50 {}, p99 {}, GPU {:.2} s",
                            r.name,
                            r.pid,
                            r.seconds,
                            r.frames,
                            q(r.p50_ms),
                            q(r.p99_ms),
                            r.gpu_time_s
                        );
                    }
                }
                return Ok(());
            }
            let trace = from_file_or_store(&store, file, w, SegmentKind::Detail)?;
            let ov = strata_trace::overview(&trace, *include_state_transitions);
            if *json { print_json(&ov) } else { print!("{}", ov.to_text()) }
        }
        Command::Aggregate { file, domain, label, window: w, json } => {
            let trace = from_file_or_store(&store, file, w, SegmentKind::Detail)?;
            let agg = strata_trace::aggregate(&trace, domain, label.as_deref());
            if *json { print_json(&agg) } else { print!("{}", agg.to_text()) }
        }
        Command::Export { file, format, output } => {
            let format: Format = format.parse()?;
            let trace = strata_trace::read_file(file, &mut warn)?;
            let out = output.clone().unwrap_or_else(|| {
                file.with_extension(match format {
                    Format::Perfetto => "pftrace",
                    Format::ChromeJson => "json",
                })
            });
            let bytes = strata_trace::export::export(&trace, format);
            std::fs::write(&out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
            eprintln!("wrote {} ({})", out.display(), human_bytes(bytes.len() as u64));
        }
        Command::Status { json } => {
            let status = store.status()?;
            let dropped = {
                let trace = load(&store, SegmentKind::Detail, None, &ProcessFilter::Any)?;
                let ov = strata_trace::overview(&trace, false);
                ov.processes.iter().map(|p| p.dropped_records).sum::<u64>()
            };
            let r = &config.retention;
            if *json {
                print_json(&serde_json::json!({
                    "store": status,
                    "dropped_records": dropped,
                    "recording": !strata_trace::off_by_env(),
                    "retention": {
                        "detail_age_s": r.detail_age.as_secs(),
                        "detail_bytes": r.detail_bytes,
                        "rollup_age_s": r.rollup_age.as_secs(),
                    },
                    "flush_interval_ms": config.flush_interval.as_millis() as u64,
                }));
            } else {
                let from = |t: Option<u64>| t.map_or("-".to_owned(), strata_trace::time::format_utc);
                println!("store       {}", status.dir);
                println!(
                    "detail      {} files, {} (from {})",
                    status.detail_files,
                    human_bytes(status.detail_bytes),
                    from(status.detail_from_ns)
                );
                println!(
                    "rollups     {} files, {} (from {})",
                    status.rollup_files,
                    human_bytes(status.rollup_bytes),
                    from(status.rollup_from_ns)
                );
                println!(
                    "retention   detail {} h / {}, rollups {} days",
                    r.detail_age.as_secs() / 3600,
                    human_bytes(r.detail_bytes),
                    r.rollup_age.as_secs() / 86400
                );
                println!(
                    "recording   {} (flush every {} ms)",
                    if strata_trace::off_by_env() { "off (STRATA_TRACE=off)" } else { "on" },
                    config.flush_interval.as_millis()
                );
                println!("dropped     {dropped} events in the stored detail");
            }
        }
        Command::Prune { json } => {
            let report = store.prune(&config.retention, strata_trace::now_ns(), &[])?;
            if *json {
                print_json(&report);
            } else {
                println!("deleted {} files ({})", report.files, human_bytes(report.bytes));
            }
        }
    }
    Ok(())
}
