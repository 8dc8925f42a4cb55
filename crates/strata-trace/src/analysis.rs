//! What a trace says: the per-process overview, state intervals, and per-state aggregation.
//!
//! Frame time is the interval between consecutive frame ends (what a user sees). The "1% low"
//! frame rate is the rate at the 99th-percentile frame time, the usual game-benchmark figure.
//! The JSON forms of these structs are a stable interface (`docs/trace.md`); fields are only
//! ever added.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use crate::model::{FRAME_BUCKETS, Fields, Name, ProcessTrace, RecordKind, StateChange, Trace, Value, bucket_upper_ns};

/// The version of the JSON schema.
pub const SCHEMA_VERSION: u32 = 1;

/// A time window in ns since the Unix epoch.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Window {
    /// Start.
    pub start_ns: u64,
    /// End.
    pub end_ns: u64,
}

/// Frame statistics.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FrameStats {
    /// Frames that ended.
    pub count: u64,
    /// Frames per second over the time covered.
    pub fps: f64,
    /// Mean frame time, ms.
    pub mean_ms: f64,
    /// Median frame time, ms.
    pub p50_ms: f64,
    /// 99th-percentile frame time ("99% high"), ms.
    pub p99_ms: f64,
    /// Frame rate at the 99th-percentile frame time ("1% low").
    pub low_1pct_fps: f64,
    /// Mean CPU time per frame, ms.
    pub cpu_mean_ms: f64,
    /// Mean GPU time per frame, ms (frames that reported one).
    pub gpu_mean_ms: Option<f64>,
}

/// Time spent in one span name.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SpanStat {
    /// The span.
    pub name: String,
    /// How many.
    pub count: u64,
    /// Total ms.
    pub total_ms: f64,
}

/// One stretch of one state.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StateInterval {
    /// The domain.
    pub domain: String,
    /// The state.
    pub label: String,
    /// When it was entered (or the window's start).
    pub start_ns: u64,
    /// When it was left (or the end of the data).
    pub end_ns: u64,
    /// Whether it was still active at the end of the data.
    pub open: bool,
    /// Stable metadata.
    pub stable: BTreeMap<String, Value>,
    /// The last volatile metadata.
    pub volatile: BTreeMap<String, Value>,
}

/// One process in the overview.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProcessOverview {
    /// Process id.
    pub pid: u32,
    /// Executable name.
    pub name: String,
    /// First and last record.
    pub span: Window,
    /// CPU time in the window, s (from the recorder's samples).
    pub cpu_time_s: Option<f64>,
    /// CPU time over wall time (1.0 = one core busy).
    pub cpu_utilization: Option<f64>,
    /// Largest resident memory sampled, bytes.
    pub rss_peak_bytes: Option<u64>,
    /// Last resident memory sampled, bytes.
    pub rss_last_bytes: Option<u64>,
    /// Frames, when the process reported any.
    pub frames: Option<FrameStats>,
    /// GPU time (frames' GPU time plus kernel times), s.
    pub gpu_time_s: f64,
    /// GPU kernels recorded.
    pub gpu_kernels: u64,
    /// The ten span names with the most time.
    pub top_spans: Vec<SpanStat>,
    /// Events lost to full thread buffers.
    pub dropped_records: u64,
    /// State changes dropped by each domain's throttle.
    pub throttled: BTreeMap<String, u64>,
    /// Every state with its start and end (with `--include-state-transitions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<StateInterval>>,
}

/// `strata trace overview --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Overview {
    /// JSON schema version.
    pub version: u32,
    /// The window asked for, if any.
    pub window: Option<Window>,
    /// One entry per process.
    pub processes: Vec<ProcessOverview>,
}

fn fields_map(f: &Fields) -> BTreeMap<String, Value> {
    f.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn span_of(p: &ProcessTrace) -> Window {
    let start = p.records.first().map_or(0, |r| r.ts);
    let end = p
        .records
        .iter()
        .map(|r| match &r.kind {
            RecordKind::Span { dur, .. } | RecordKind::Gpu { dur, .. } => r.ts.saturating_add(*dur),
            _ => r.ts,
        })
        .max()
        .unwrap_or(start);
    Window { start_ns: start, end_ns: end }
}

/// Every state interval of a process, in order of start.
pub fn state_intervals(p: &ProcessTrace) -> Vec<StateInterval> {
    let end = span_of(p).end_ns;
    let mut open: BTreeMap<Name, StateInterval> = BTreeMap::new();
    let mut done = Vec::new();
    for r in &p.records {
        let RecordKind::State { domain, label, stable, volatile, change } = &r.kind else { continue };
        if *change == StateChange::Volatile {
            if let Some(i) = open.get_mut(domain) {
                i.volatile = fields_map(volatile);
            }
            continue;
        }
        let stable = fields_map(stable);
        // A snapshot restates what earlier records said; it only tells something when they
        // are missing (a window's start, a segment whose predecessors were deleted).
        if *change == StateChange::Snapshot && open.contains_key(domain) {
            continue;
        }
        if let Some(mut i) = open.remove(domain) {
            i.end_ns = r.ts;
            i.open = false;
            done.push(i);
        }
        if let Some(label) = label {
            open.insert(
                domain.clone(),
                StateInterval {
                    domain: domain.to_string(),
                    label: label.to_string(),
                    start_ns: r.ts,
                    end_ns: end,
                    open: true,
                    stable,
                    volatile: fields_map(volatile),
                },
            );
        }
    }
    done.extend(open.into_values());
    done.sort_by(|a, b| (a.start_ns, &a.domain).cmp(&(b.start_ns, &b.domain)));
    done
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Frame statistics over the parts of the process inside `ranges` (all of it when `None`).
fn frame_stats(p: &ProcessTrace, ranges: Option<&[(u64, u64)]>) -> Option<FrameStats> {
    let inside = |t: u64| ranges.is_none_or(|rs| rs.iter().any(|&(s, e)| t > s && t <= e));
    let mut prev = None;
    let (mut count, mut cpu, mut gpu, mut gpu_n) = (0u64, 0u64, 0u64, 0u64);
    let mut intervals = Vec::new();
    for r in &p.records {
        let RecordKind::Frame { cpu: c, gpu: g } = &r.kind else { continue };
        let dt = prev.map(|t| r.ts.saturating_sub(t));
        prev = Some(r.ts);
        if !inside(r.ts) {
            continue;
        }
        count += 1;
        cpu += c;
        if let Some(g) = g {
            gpu += g;
            gpu_n += 1;
        }
        if let Some(dt) = dt {
            intervals.push(dt);
        }
    }
    if count == 0 {
        return None;
    }
    intervals.sort_unstable();
    // Without ranges, the time covered is the sum of the frame intervals (one per frame but
    // the first, whose start is unknown).
    let (covered, counted) = match ranges {
        Some(rs) => (rs.iter().map(|(s, e)| e.saturating_sub(*s)).sum::<u64>(), count),
        None => (intervals.iter().sum::<u64>(), intervals.len() as u64),
    };
    let ms = |ns: u64| ns as f64 / 1e6;
    let mean =
        if intervals.is_empty() { 0.0 } else { intervals.iter().sum::<u64>() as f64 / intervals.len() as f64 / 1e6 };
    let p99 = percentile(&intervals, 0.99);
    Some(FrameStats {
        count,
        fps: if covered > 0 { counted as f64 / (covered as f64 / 1e9) } else { 0.0 },
        mean_ms: mean,
        p50_ms: ms(percentile(&intervals, 0.5)),
        p99_ms: ms(p99),
        low_1pct_fps: if p99 > 0 { 1e9 / p99 as f64 } else { 0.0 },
        cpu_mean_ms: ms(cpu) / count as f64,
        gpu_mean_ms: (gpu_n > 0).then(|| ms(gpu) / gpu_n as f64),
    })
}

fn gpu_in(p: &ProcessTrace, ranges: Option<&[(u64, u64)]>) -> (u64, u64) {
    // Kernels belong to the state they started in; frames, as in `frame_stats`, to the one
    // they ended in.
    let inside = |t: u64| ranges.is_none_or(|rs| rs.iter().any(|&(s, e)| t >= s && t < e));
    let frame_inside = |t: u64| ranges.is_none_or(|rs| rs.iter().any(|&(s, e)| t > s && t <= e));
    let (mut ns, mut kernels) = (0, 0);
    for r in &p.records {
        match &r.kind {
            RecordKind::Frame { gpu: Some(g), .. } if frame_inside(r.ts) => ns += g,
            RecordKind::Gpu { dur, .. } if inside(r.ts) => {
                ns += dur;
                kernels += 1;
            }
            _ => {}
        }
    }
    (ns, kernels)
}

/// The overview of every process in `trace`.
pub fn overview(trace: &Trace, include_states: bool) -> Overview {
    let processes = trace
        .processes
        .iter()
        .map(|p| {
            let info = p.info();
            let span = span_of(p);
            let series = |name: &str| -> Vec<f64> {
                p.records
                    .iter()
                    .filter_map(|r| match &r.kind {
                        RecordKind::Counter { name: n, value } if &**n == name => Some(*value),
                        _ => None,
                    })
                    .collect()
            };
            let cpu = series("process.cpu_ns");
            let cpu_time_s = (cpu.len() >= 2).then(|| (cpu[cpu.len() - 1] - cpu[0]) / 1e9);
            let wall = span.end_ns.saturating_sub(span.start_ns) as f64 / 1e9;
            let rss = series("process.rss_bytes");
            let (gpu_ns, gpu_kernels) = gpu_in(p, None);
            let mut spans: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            let (mut dropped, mut throttled) = (0, BTreeMap::new());
            for r in &p.records {
                match &r.kind {
                    RecordKind::Span { name, dur } => {
                        let e = spans.entry(name).or_default();
                        e.0 += 1;
                        e.1 += dur;
                    }
                    RecordKind::Dropped { count } => dropped += count,
                    RecordKind::Throttled { domain, count } => {
                        *throttled.entry(domain.to_string()).or_default() += count
                    }
                    _ => {}
                }
            }
            let mut top_spans: Vec<SpanStat> = spans
                .into_iter()
                .map(|(name, (count, ns))| SpanStat { name: name.to_owned(), count, total_ms: ns as f64 / 1e6 })
                .collect();
            top_spans.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then_with(|| a.name.cmp(&b.name)));
            top_spans.truncate(10);
            ProcessOverview {
                pid: info.pid,
                name: info.name,
                span,
                cpu_time_s,
                cpu_utilization: cpu_time_s.filter(|_| wall > 0.0).map(|c| c / wall),
                rss_peak_bytes: rss.iter().copied().reduce(f64::max).map(|v| v as u64),
                rss_last_bytes: rss.last().map(|&v| v as u64),
                frames: frame_stats(p, None),
                gpu_time_s: gpu_ns as f64 / 1e9,
                gpu_kernels,
                top_spans,
                dropped_records: dropped,
                throttled,
                states: include_states.then(|| state_intervals(p)),
            }
        })
        .collect();
    Overview {
        version: SCHEMA_VERSION,
        window: trace.window.map(|(start_ns, end_ns)| Window { start_ns, end_ns }),
        processes,
    }
}

/// Another domain's state overlapping the aggregated one.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Overlap {
    /// Its domain.
    pub domain: String,
    /// Its label.
    pub label: String,
    /// Seconds both were active.
    pub overlap_s: f64,
}

/// One label of the aggregated domain.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StateAggregate {
    /// The label.
    pub label: String,
    /// How many times it was entered.
    pub intervals: u64,
    /// Seconds it was active.
    pub active_s: f64,
    /// Frames while it was active.
    pub frames: Option<FrameStats>,
    /// GPU time while it was active, s.
    pub gpu_time_s: f64,
    /// States of other domains active at the same time, longest overlap first.
    pub overlaps: Vec<Overlap>,
}

/// One process in the aggregation.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProcessAggregate {
    /// Process id.
    pub pid: u32,
    /// Executable name.
    pub name: String,
    /// One entry per label.
    pub states: Vec<StateAggregate>,
}

/// `strata trace aggregate --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Aggregate {
    /// JSON schema version.
    pub version: u32,
    /// The domain.
    pub domain: String,
    /// Processes that had the domain.
    pub processes: Vec<ProcessAggregate>,
}

/// Frame rate, GPU time and overlaps per state of `domain` (only `label` when given).
pub fn aggregate(trace: &Trace, domain: &str, label: Option<&str>) -> Aggregate {
    let mut processes = Vec::new();
    for p in &trace.processes {
        let info = p.info();
        let intervals = state_intervals(p);
        let mut by_label: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
        for i in intervals.iter().filter(|i| i.domain == domain && label.is_none_or(|l| l == i.label)) {
            by_label.entry(&i.label).or_default().push((i.start_ns, i.end_ns));
        }
        if by_label.is_empty() {
            continue;
        }
        let states = by_label
            .into_iter()
            .map(|(l, ranges)| {
                let mut overlaps: BTreeMap<(String, String), u64> = BTreeMap::new();
                for o in intervals.iter().filter(|o| o.domain != domain) {
                    let ns: u64 = ranges.iter().map(|&(s, e)| e.min(o.end_ns).saturating_sub(s.max(o.start_ns))).sum();
                    if ns > 0 {
                        *overlaps.entry((o.domain.clone(), o.label.clone())).or_default() += ns;
                    }
                }
                let mut overlaps: Vec<Overlap> = overlaps
                    .into_iter()
                    .map(|((domain, label), ns)| Overlap { domain, label, overlap_s: ns as f64 / 1e9 })
                    .collect();
                overlaps.sort_by(|a, b| b.overlap_s.total_cmp(&a.overlap_s));
                StateAggregate {
                    label: l.to_owned(),
                    intervals: ranges.len() as u64,
                    active_s: ranges.iter().map(|(s, e)| e.saturating_sub(*s)).sum::<u64>() as f64 / 1e9,
                    frames: frame_stats(p, Some(&ranges)),
                    gpu_time_s: gpu_in(p, Some(&ranges)).0 as f64 / 1e9,
                    overlaps,
                }
            })
            .collect();
        processes.push(ProcessAggregate { pid: info.pid, name: info.name, states });
    }
    Aggregate { version: SCHEMA_VERSION, domain: domain.to_owned(), processes }
}

/// Per-state frame statistics from the per-second rollups (days of history, coarser).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RollupRow {
    /// Process id.
    pub pid: u32,
    /// Executable name.
    pub name: String,
    /// The active states, `domain=label`, sorted.
    pub states: Vec<String>,
    /// Seconds with records under these states.
    pub seconds: u64,
    /// Frames.
    pub frames: u64,
    /// Median frame time, ms (upper edge of its histogram bucket).
    pub p50_ms: Option<f64>,
    /// 99th-percentile frame time, ms (upper edge of its histogram bucket).
    pub p99_ms: Option<f64>,
    /// GPU time, s.
    pub gpu_time_s: f64,
    /// CPU time of frames, s.
    pub cpu_time_s: f64,
}

/// Summarises rollup records per process and set of active states.
pub fn rollup_summary(trace: &Trace) -> Vec<RollupRow> {
    let mut rows = Vec::new();
    for p in &trace.processes {
        let info = p.info();
        // Per set of states: (seconds seen, frames, frame-time histogram, GPU ns, CPU ns).
        type Acc = (BTreeSet<u64>, u64, [u64; FRAME_BUCKETS], u64, u64);
        let mut acc: BTreeMap<Vec<String>, Acc> = BTreeMap::new();
        for r in &p.records {
            let RecordKind::Rollup(r) = &r.kind else { continue };
            let key = r.states.iter().map(|(d, l)| format!("{d}={l}")).collect();
            let e = acc.entry(key).or_insert((BTreeSet::new(), 0, [0; FRAME_BUCKETS], 0, 0));
            e.0.insert(r.second);
            e.1 += r.frames;
            for &(b, n) in &r.frame_hist {
                e.2[(b as usize).min(FRAME_BUCKETS - 1)] += n;
            }
            e.3 += r.gpu_ns;
            e.4 += r.cpu_ns;
        }
        for (states, (seconds, frames, hist, gpu, cpu)) in acc {
            let total: u64 = hist.iter().sum();
            let q = |q: f64| {
                let want = ((q * total as f64).ceil() as u64).max(1);
                let mut seen = 0;
                (total > 0).then(|| {
                    let b = hist.iter().position(|&n| {
                        seen += n;
                        seen >= want
                    });
                    bucket_upper_ns(b.unwrap_or(FRAME_BUCKETS - 1)) as f64 / 1e6
                })
            };
            rows.push(RollupRow {
                pid: info.pid,
                name: info.name.clone(),
                states,
                seconds: seconds.len() as u64,
                frames,
                p50_ms: q(0.5),
                p99_ms: q(0.99),
                gpu_time_s: gpu as f64 / 1e9,
                cpu_time_s: cpu as f64 / 1e9,
            });
        }
    }
    rows
}

fn time(ns: u64) -> String {
    crate::time::format_utc(ns)
}

fn bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn frames_line(out: &mut String, f: &FrameStats) {
    let gpu = f.gpu_mean_ms.map_or(String::new(), |g| format!(", GPU {g:.2} ms/frame"));
    let _ = writeln!(
        out,
        "  frames      {} at {:.1} fps; frame time p50 {:.2} ms, p99 {:.2} ms (1% low {:.1} fps); CPU {:.2} ms/frame{gpu}",
        f.count, f.fps, f.p50_ms, f.p99_ms, f.low_1pct_fps, f.cpu_mean_ms
    );
}

impl Overview {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.processes.is_empty() {
            out.push_str("no records in this window\n");
        }
        for p in &self.processes {
            let dur = p.span.end_ns.saturating_sub(p.span.start_ns) as f64 / 1e9;
            let _ = writeln!(
                out,
                "{} (pid {}): {} .. {} ({dur:.1} s)",
                p.name,
                p.pid,
                time(p.span.start_ns),
                time(p.span.end_ns)
            );
            if let (Some(c), Some(u)) = (p.cpu_time_s, p.cpu_utilization) {
                let _ = writeln!(out, "  CPU         {c:.2} s ({:.0}% of one core)", u * 100.0);
            }
            if let (Some(peak), Some(last)) = (p.rss_peak_bytes, p.rss_last_bytes) {
                let _ = writeln!(out, "  memory      peak {}, last {}", bytes(peak), bytes(last));
            }
            if let Some(f) = &p.frames {
                frames_line(&mut out, f);
            }
            if p.gpu_time_s > 0.0 {
                let _ = writeln!(out, "  GPU         {:.3} s ({} kernels)", p.gpu_time_s, p.gpu_kernels);
            }
            for s in p.top_spans.iter().take(5) {
                let _ = writeln!(out, "  span        {:<24} {:>8} × {:>10.2} ms total", s.name, s.count, s.total_ms);
            }
            if p.dropped_records > 0 {
                let _ = writeln!(out, "  dropped     {} events (thread buffers full)", p.dropped_records);
            }
            for (d, n) in &p.throttled {
                let _ = writeln!(out, "  throttled   {n} changes of domain {d}");
            }
            if let Some(states) = &p.states {
                for s in states {
                    let end = if s.open { "(still active)".to_owned() } else { time(s.end_ns) };
                    let _ = writeln!(
                        out,
                        "  state       {}={} {} .. {end} {:.2} s",
                        s.domain,
                        s.label,
                        time(s.start_ns),
                        (s.end_ns - s.start_ns) as f64 / 1e9
                    );
                }
            }
        }
        out
    }
}

impl Aggregate {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.processes.is_empty() {
            let _ = writeln!(out, "no states of domain '{}' in this window", self.domain);
        }
        for p in &self.processes {
            let _ = writeln!(out, "{} (pid {}), domain {}:", p.name, p.pid, self.domain);
            for s in &p.states {
                let gpu = if s.gpu_time_s > 0.0 { format!(", GPU {:.3} s", s.gpu_time_s) } else { String::new() };
                let _ = writeln!(out, " {}: active {:.2} s in {} intervals{gpu}", s.label, s.active_s, s.intervals);
                if let Some(f) = &s.frames {
                    frames_line(&mut out, f);
                }
                for o in s.overlaps.iter().take(8) {
                    let _ = writeln!(out, "  overlaps    {}={} for {:.2} s", o.domain, o.label, o.overlap_s);
                }
            }
        }
        out
    }
}
