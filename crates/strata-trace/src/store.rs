//! The data directory: listing, loading a window, collecting to one file, pruning, status.
//!
//! Layout: `DIR/detail/*.strace` holds every record, `DIR/rollup/*.strace` the per-second
//! aggregates. A file is named `{open time in ms}-{pid}-{seq}.strace` and written by exactly one
//! process, so processes recording at once never share a file. Retention deletes whole files,
//! oldest first, and never rewrites one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::error::TraceError;
use crate::model::{ProcessInfo, ProcessTrace, Record, RecordKind, StateChange, Trace};
use crate::recorder::Retention;
use crate::wire::{Encoder, decode, header};

/// File times come from the kernel's coarse clock and may trail our time stamps a little.
const MTIME_SLACK_NS: u64 = 2_000_000_000;

/// Which files: full detail or per-second rollups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// Every record, kept for hours.
    Detail,
    /// Per-second aggregates, kept for days.
    Rollup,
}

/// One file of the store.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    /// Where it is.
    pub path: PathBuf,
    /// When it was opened, ns since the Unix epoch (from its name).
    pub start_ns: u64,
    /// The process that wrote it.
    pub pid: u32,
    /// When it was last written, ns since the Unix epoch.
    pub modified_ns: u64,
    /// Its size.
    pub bytes: u64,
}

/// Which processes a command looks at: all, a pid, or those whose name contains a string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProcessFilter {
    /// Every process.
    #[default]
    Any,
    /// The process with this pid.
    Pid(u32),
    /// Processes whose name contains this.
    Name(String),
}

impl ProcessFilter {
    /// `1234` selects a pid, anything else a name substring.
    pub fn parse(s: &str) -> ProcessFilter {
        s.parse().map_or_else(|_| ProcessFilter::Name(s.to_owned()), ProcessFilter::Pid)
    }
    /// Whether `p` is selected.
    pub fn matches(&self, p: &ProcessInfo) -> bool {
        match self {
            ProcessFilter::Any => true,
            ProcessFilter::Pid(pid) => p.pid == *pid,
            ProcessFilter::Name(n) => p.name.contains(n.as_str()),
        }
    }
}

/// What `prune` deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Files deleted.
    pub files: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// Disk use of the store.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreStatus {
    /// The data directory.
    pub dir: String,
    /// Detail files and their bytes.
    pub detail_files: u64,
    /// Bytes of detail.
    pub detail_bytes: u64,
    /// Rollup files.
    pub rollup_files: u64,
    /// Bytes of rollups.
    pub rollup_bytes: u64,
    /// Oldest detail, ns since the Unix epoch.
    pub detail_from_ns: Option<u64>,
    /// Oldest rollup, ns since the Unix epoch.
    pub rollup_from_ns: Option<u64>,
}

/// A data directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

fn modified_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64)
}

impl Store {
    /// The store in `dir` (nothing is created until a recorder writes there).
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn kind_dir(&self, kind: SegmentKind) -> PathBuf {
        self.dir.join(match kind {
            SegmentKind::Detail => "detail",
            SegmentKind::Rollup => "rollup",
        })
    }

    /// The files of one kind, oldest first. A directory that does not exist has none.
    pub fn files(&self, kind: SegmentKind) -> Result<Vec<SegmentFile>, TraceError> {
        let dir = self.kind_dir(kind);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TraceError::io(dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".strace")) else {
                continue;
            };
            let mut parts = name.split('-');
            let (Some(Ok(ms)), Some(Ok(pid))) =
                (parts.next().map(str::parse::<u64>), parts.next().map(str::parse::<u32>))
            else {
                continue;
            };
            // A file deleted between listing and stat is simply gone.
            let Ok(meta) = entry.metadata() else { continue };
            out.push(SegmentFile {
                path,
                start_ns: ms.saturating_mul(1_000_000),
                pid,
                modified_ns: modified_ns(&meta),
                bytes: meta.len(),
            });
        }
        out.sort_by(|a, b| (a.start_ns, &a.path).cmp(&(b.start_ns, &b.path)));
        Ok(out)
    }

    /// Loads the records of `window` (ns since the Unix epoch; `None` = everything) for the
    /// processes `filter` selects. `progress(done, total)` is called after each file; damaged
    /// files and torn chunks are reported through `warn` and skipped.
    pub fn load(
        &self,
        kind: SegmentKind,
        window: Option<(u64, u64)>,
        filter: &ProcessFilter,
        progress: &mut dyn FnMut(usize, usize),
        warn: &mut dyn FnMut(String),
    ) -> Result<Trace, TraceError> {
        if let Some((s, e)) = window
            && e < s
        {
            return Err(TraceError::Usage("the window ends before it starts".into()));
        }
        let files: Vec<_> = self
            .files(kind)?
            .into_iter()
            .filter(|f| window.is_none_or(|(s, e)| f.start_ns <= e && f.modified_ns + MTIME_SLACK_NS >= s))
            .filter(|f| !matches!(filter, ProcessFilter::Pid(p) if *p != f.pid))
            .collect();
        let mut streams = Vec::new();
        for (i, f) in files.iter().enumerate() {
            match std::fs::read(&f.path) {
                Ok(bytes) => {
                    let mut w = |m: String| warn(format!("{}: {m}", f.path.display()));
                    match decode(&bytes, &mut w) {
                        Ok(s) => streams.extend(s),
                        Err(m) => w(format!("skipped: {m}")),
                    }
                }
                // Pruned by another process since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn(format!("{}: skipped: {e}", f.path.display())),
            }
            progress(i + 1, files.len());
        }
        Ok(merge(streams, window, filter))
    }

    /// Deletes detail older than `retention.detail_age`, then the oldest detail while the rest
    /// exceeds `retention.detail_bytes`, and rollups older than `retention.rollup_age`. Files
    /// in `keep` (the caller's open segments) and files written in the last ten seconds (other
    /// processes' open segments) survive the size rule.
    pub fn prune(&self, retention: &Retention, now_ns: u64, keep: &[PathBuf]) -> Result<PruneReport, TraceError> {
        let mut report = PruneReport::default();
        let delete = |f: &SegmentFile, report: &mut PruneReport| {
            let gone = std::fs::remove_file(&f.path).is_ok();
            if gone {
                report.files += 1;
                report.bytes += f.bytes;
            }
            gone
        };
        let age = |d: std::time::Duration| now_ns.saturating_sub(d.as_nanos() as u64);
        let detail = self.files(SegmentKind::Detail)?;
        let (old, mut young): (Vec<_>, Vec<_>) =
            detail.into_iter().partition(|f| f.modified_ns < age(retention.detail_age) && !keep.contains(&f.path));
        old.iter().for_each(|f| {
            delete(f, &mut report);
        });
        let mut total: u64 = young.iter().map(|f| f.bytes).sum();
        young.sort_by_key(|f| f.modified_ns);
        for f in &young {
            if total <= retention.detail_bytes {
                break;
            }
            if keep.contains(&f.path) || f.modified_ns + 10_000_000_000 > now_ns {
                continue;
            }
            if delete(f, &mut report) {
                total -= f.bytes;
            }
        }
        for f in self.files(SegmentKind::Rollup)? {
            if f.modified_ns < age(retention.rollup_age) && !keep.contains(&f.path) {
                delete(&f, &mut report);
            }
        }
        Ok(report)
    }

    /// Disk use.
    pub fn status(&self) -> Result<StoreStatus, TraceError> {
        let detail = self.files(SegmentKind::Detail)?;
        let rollup = self.files(SegmentKind::Rollup)?;
        Ok(StoreStatus {
            dir: self.dir.display().to_string(),
            detail_files: detail.len() as u64,
            detail_bytes: detail.iter().map(|f| f.bytes).sum(),
            rollup_files: rollup.len() as u64,
            rollup_bytes: rollup.iter().map(|f| f.bytes).sum(),
            detail_from_ns: detail.iter().map(|f| f.start_ns).min(),
            rollup_from_ns: rollup.iter().map(|f| f.start_ns).min(),
        })
    }
}

/// Groups streams by process, sorts each by time, and keeps `window`, opening it with a
/// snapshot of every state active at its start.
fn merge(streams: Vec<ProcessTrace>, window: Option<(u64, u64)>, filter: &ProcessFilter) -> Trace {
    let mut by_process: BTreeMap<(u64, u32), ProcessTrace> = BTreeMap::new();
    for s in streams {
        let info = s.info();
        if !filter.matches(&info) {
            continue;
        }
        let p = by_process
            .entry((info.start_ns, info.pid))
            .or_insert_with(|| ProcessTrace { info: Some(info), records: Vec::new() });
        p.records.extend(s.records);
    }
    let mut processes = Vec::new();
    for (_, mut p) in by_process {
        p.records.sort_by_key(|r| r.ts);
        if let Some((start, end)) = window {
            p.records = clip(std::mem::take(&mut p.records), start, end);
        }
        // A process seen only through its opening records in a later segment has nothing here.
        if p.records
            .iter()
            .any(|r| !matches!(r.kind, RecordKind::ThreadName { .. }) && window.is_none_or(|(s, _)| r.ts >= s))
        {
            processes.push(p);
        }
    }
    Trace { processes, window }
}

fn clip(records: Vec<Record>, start: u64, end: u64) -> Vec<Record> {
    let mut before: BTreeMap<crate::model::Name, Record> = BTreeMap::new();
    let mut threads: BTreeMap<u64, Record> = BTreeMap::new();
    let mut inside = Vec::new();
    for r in records {
        let runs_into_window = match &r.kind {
            RecordKind::Span { dur, .. } | RecordKind::Gpu { dur, .. } => r.ts.saturating_add(*dur) > start,
            _ => false,
        };
        if r.ts < start && runs_into_window && r.ts <= end {
            inside.push(r);
        } else if r.ts < start {
            match &r.kind {
                RecordKind::State { domain, change: StateChange::Volatile, volatile, .. } => {
                    if let Some(Record { kind: RecordKind::State { volatile: v, .. }, .. }) = before.get_mut(domain) {
                        *v = volatile.clone();
                    }
                }
                RecordKind::State { domain, label: Some(_), .. } => {
                    before.insert(domain.clone(), r.clone());
                }
                RecordKind::State { domain, label: None, .. } => {
                    before.remove(domain);
                }
                RecordKind::ThreadName { .. } => {
                    threads.insert(r.thread, r);
                }
                _ => {}
            }
        } else if r.ts <= end {
            inside.push(r);
        }
    }
    let mut out: Vec<Record> = threads.into_values().map(|r| Record { ts: start, ..r }).collect();
    for (_, mut r) in before {
        r.ts = start;
        if let RecordKind::State { change, .. } = &mut r.kind {
            *change = StateChange::Snapshot;
        }
        out.push(r);
    }
    out.extend(inside);
    out
}

impl Trace {
    /// The part of this trace inside `window` (opened with the states active at its start)
    /// for the processes `filter` selects.
    pub fn select(self, window: Option<(u64, u64)>, filter: &ProcessFilter) -> Trace {
        merge(self.processes, window, filter)
    }
}

/// Reads a trace file (a collected file or one segment). Torn chunks are reported through
/// `warn`; a file that is not a trace file is an `Err`.
pub fn read_file(path: &Path, warn: &mut dyn FnMut(String)) -> Result<Trace, TraceError> {
    let bytes = std::fs::read(path).map_err(TraceError::io(path))?;
    let streams = decode(&bytes, &mut |m| warn(format!("{}: {m}", path.display())))
        .map_err(|what| TraceError::Corrupt { path: path.to_owned(), what })?;
    Ok(merge(streams, None, &ProcessFilter::Any))
}

/// Writes `trace` as one self-contained file (a stream per process). Returns its size.
pub fn write_file(path: &Path, trace: &Trace) -> Result<u64, TraceError> {
    let mut out = header();
    for p in &trace.processes {
        let mut enc = Encoder::default();
        let info = p.info();
        let mut chunks = p.records.chunks(1 << 16);
        out.extend(enc.chunk(Some(&info), chunks.next().unwrap_or(&[])));
        for c in chunks {
            out.extend(enc.chunk(None, c));
        }
    }
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, &out).map_err(TraceError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(TraceError::io(path))?;
    Ok(out.len() as u64)
}
