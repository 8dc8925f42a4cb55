//! The flusher's side of the store: appends chunks to this process's current segment, rotates
//! segments, builds the per-second rollups, and prunes old files now and then.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use crate::error::TraceError;
use crate::model::{Fields, Name, ProcessInfo, Record, RecordKind, Rollup, StateChange, bucket_of};
use crate::recorder::Config;
use crate::ring::{Raw, RawKind};
use crate::store::{SegmentKind, Store};
use crate::wire::{Encoder, FastMap, header};

struct Open {
    file: File,
    path: PathBuf,
    opened_ns: u64,
    bytes: u64,
    enc: Encoder,
}

#[derive(Clone)]
struct Current {
    label: Name,
    stable: Fields,
    volatile: Fields,
}

#[derive(Default)]
struct Bin {
    frames: u64,
    hist: BTreeMap<u32, u64>,
    gpu_ns: u64,
    cpu_ns: u64,
}

pub(crate) struct Sink {
    config: Config,
    store: Store,
    info: ProcessInfo,
    detail: Option<Open>,
    rollup: Option<Open>,
    seq: u64,
    names: FastMap<(usize, usize), Name>,
    threads: Vec<(u64, Name)>,
    states: BTreeMap<Name, Current>,
    bins: BTreeMap<(u64, Vec<(Name, Name)>), Bin>,
    last_frame: Option<u64>,
    last_prune: u64,
    bytes_written: u64,
    /// Buffers kept between flushes (fresh ones page-faulted on every flush).
    raw_buffer: Vec<(u64, Raw)>,
    record_buffer: Vec<Record>,
    /// Process CPU time and memory when the recorder started, written with the first batch so
    /// that even a short run has two samples to take a difference of.
    first_sample: Option<(u64, Option<u64>)>,
    last_written: u64,
}

const PRUNE_EVERY_NS: u64 = 60_000_000_000;
const ROLLUP_SPAN_NS: u64 = 3_600_000_000_000;

impl Sink {
    pub fn new(config: Config, info: ProcessInfo) -> Result<Sink, TraceError> {
        let store = Store::new(&config.dir);
        for kind in [SegmentKind::Detail, SegmentKind::Rollup] {
            let dir = store.kind_dir(kind);
            std::fs::create_dir_all(&dir).map_err(TraceError::io(dir))?;
        }
        Ok(Sink {
            config,
            store,
            info,
            detail: None,
            rollup: None,
            seq: 0,
            names: FastMap::default(),
            threads: Vec::new(),
            states: BTreeMap::new(),
            bins: BTreeMap::new(),
            last_frame: None,
            last_prune: 0,
            bytes_written: 0,
            raw_buffer: Vec::new(),
            record_buffer: Vec::new(),
            first_sample: Some(crate::recorder::process_usage()),
            last_written: 0,
        })
    }

    pub fn take_raw_buffer(&mut self) -> Vec<(u64, Raw)> {
        std::mem::take(&mut self.raw_buffer)
    }

    pub fn return_raw_buffer(&mut self, mut b: Vec<(u64, Raw)>) {
        b.clear();
        self.raw_buffer = b;
    }

    pub fn take_record_buffer(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.record_buffer)
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    pub fn knows_thread(&self, tid: u64) -> bool {
        self.threads.iter().any(|(t, _)| *t == tid)
    }

    pub fn add_thread(&mut self, tid: u64, name: Name) {
        self.threads.push((tid, name));
    }

    /// Turns a ring event into a record, sharing one `Name` per distinct `&'static str`.
    pub fn convert(&mut self, thread: u64, raw: Raw) -> Record {
        let key = (raw.name.as_ptr() as usize, raw.name.len());
        let name = self.names.entry(key).or_insert_with(|| Name::from(raw.name)).clone();
        let kind = match raw.kind {
            RawKind::Span => RecordKind::Span { name, dur: raw.a },
            RawKind::Instant => RecordKind::Instant { name },
            RawKind::Counter => RecordKind::Counter { name, value: f64::from_bits(raw.a) },
            RawKind::Frame => RecordKind::Frame { cpu: raw.a, gpu: raw.b.checked_sub(1) },
            RawKind::Gpu => RecordKind::Gpu { name, dur: raw.a },
        };
        Record { ts: raw.ts, thread, kind }
    }

    fn open(&mut self, kind: SegmentKind, now: u64) -> Result<Open, TraceError> {
        self.seq += 1;
        let name = format!("{:014}-{}-{}.strace", now / 1_000_000, self.info.pid, self.seq);
        let path = self.store.kind_dir(kind).join(name);
        let mut file = File::options().create_new(true).append(true).open(&path).map_err(TraceError::io(&path))?;
        file.write_all(&header()).map_err(TraceError::io(&path))?;
        Ok(Open { file, path, opened_ns: now, bytes: 8, enc: Encoder::default() })
    }

    fn append(open: &mut Open, first: bool, info: &ProcessInfo, records: &[Record]) -> Result<u64, TraceError> {
        let chunk = open.enc.chunk(first.then_some(info), records);
        open.file.write_all(&chunk).map_err(TraceError::io(&open.path))?;
        open.bytes += chunk.len() as u64;
        Ok(chunk.len() as u64)
    }

    /// Appends a batch (sorted by time) recorded up to `now`.
    pub fn write(&mut self, mut records: Vec<Record>, now: u64, all_rollups: bool) -> Result<(), TraceError> {
        if let Some((cpu, rss)) = self.first_sample.take() {
            let at = self.info.start_ns;
            let counter = |name: &str, value: f64| Record {
                ts: at,
                thread: 0,
                kind: RecordKind::Counter { name: Name::from(name), value },
            };
            let mut first = vec![counter("process.cpu_ns", cpu as f64)];
            first.extend(rss.map(|r| counter("process.rss_bytes", r as f64)));
            records.splice(0..0, first);
        }
        let result = self.write_batch(&records, now, all_rollups);
        records.clear();
        self.record_buffer = records;
        result
    }

    fn write_batch(&mut self, records: &[Record], now: u64, all_rollups: bool) -> Result<(), TraceError> {
        let rotate = self.detail.as_ref().is_none_or(|d| {
            now.saturating_sub(d.opened_ns) >= self.config.segment_span.as_nanos() as u64
                || d.bytes >= self.config.segment_bytes
        });
        if rotate {
            let mut open = self.open(SegmentKind::Detail, now)?;
            // The states map holds what every record written so far says, so the snapshot is
            // true as of the latest of them (not of this batch's earliest, which may be the
            // start of a long span).
            let at = self.last_written.max(records.first().map_or(now, |r| r.ts.min(now)));
            self.bytes_written += 8 + Self::append(&mut open, true, &self.info, &self.opening_records(at))?;
            self.detail = Some(open);
        }
        if !records.is_empty() {
            match Self::append(self.detail.as_mut().unwrap(), false, &self.info, records) {
                Ok(n) => self.bytes_written += n,
                Err(e) => {
                    // The encoder now believes strings were sent that never reached the file:
                    // start a fresh segment next time.
                    self.detail = None;
                    return Err(e);
                }
            }
            self.last_written = self.last_written.max(records.iter().map(|r| r.ts).max().unwrap_or(0));
        }
        self.roll(records);
        self.emit_rollups(now, all_rollups)?;
        if now.saturating_sub(self.last_prune) >= PRUNE_EVERY_NS {
            self.last_prune = now;
            let keep: Vec<PathBuf> = self.detail.iter().chain(&self.rollup).map(|o| o.path.clone()).collect();
            // Pruning is housekeeping: a failure (another process deleted the file first) is
            // not worth losing records over.
            let _ = self.store.prune(&self.config.retention, now, &keep);
        }
        Ok(())
    }

    /// What a new segment opens with: thread names and the state of every domain, so that the
    /// segment reads on its own.
    fn opening_records(&self, at: u64) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .threads
            .iter()
            .map(|(tid, name)| Record { ts: at, thread: *tid, kind: RecordKind::ThreadName { name: name.clone() } })
            .collect();
        out.extend(self.states.iter().map(|(domain, c)| Record {
            ts: at,
            thread: 0,
            kind: RecordKind::State {
                domain: domain.clone(),
                label: Some(c.label.clone()),
                stable: c.stable.clone(),
                volatile: c.volatile.clone(),
                change: StateChange::Snapshot,
            },
        }));
        out
    }

    fn key(&self) -> Vec<(Name, Name)> {
        self.states.iter().map(|(d, c)| (d.clone(), c.label.clone())).collect()
    }

    fn roll(&mut self, records: &[Record]) {
        for r in records {
            match &r.kind {
                RecordKind::State { domain, label, stable, volatile, change } => match (change, label) {
                    (StateChange::Volatile, _) => {
                        if let Some(c) = self.states.get_mut(domain) {
                            c.volatile = volatile.clone();
                        }
                    }
                    (_, Some(label)) => {
                        let c = Current { label: label.clone(), stable: stable.clone(), volatile: volatile.clone() };
                        self.states.insert(domain.clone(), c);
                    }
                    (_, None) => {
                        self.states.remove(domain);
                    }
                },
                RecordKind::Frame { cpu, gpu } => {
                    let interval = self.last_frame.map(|t| r.ts.saturating_sub(t));
                    self.last_frame = Some(r.ts);
                    let bin = self.bins.entry((r.ts / 1_000_000_000, self.key())).or_default();
                    bin.frames += 1;
                    bin.cpu_ns += cpu;
                    bin.gpu_ns += gpu.unwrap_or(0);
                    if let Some(dt) = interval {
                        *bin.hist.entry(bucket_of(dt) as u32).or_default() += 1;
                    }
                }
                RecordKind::Gpu { dur, .. } => {
                    self.bins.entry((r.ts / 1_000_000_000, self.key())).or_default().gpu_ns += dur;
                }
                _ => {}
            }
        }
    }

    /// Writes the bins of seconds that are over (one flush interval of slack for late events),
    /// or every bin with `all`; a second written twice is summed by readers.
    fn emit_rollups(&mut self, now: u64, all: bool) -> Result<(), TraceError> {
        let done_before = if all {
            u64::MAX
        } else {
            now.saturating_sub(self.config.flush_interval.as_nanos() as u64) / 1_000_000_000
        };
        let keys: Vec<_> = self.bins.keys().filter(|(s, _)| *s < done_before).cloned().collect();
        if keys.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = keys
            .iter()
            .map(|key| {
                let bin = &self.bins[key];
                let (second, states) = key.clone();
                Record {
                    ts: second * 1_000_000_000,
                    thread: 0,
                    kind: RecordKind::Rollup(Box::new(Rollup {
                        second,
                        states,
                        frames: bin.frames,
                        frame_hist: bin.hist.iter().map(|(&b, &n)| (b, n)).collect(),
                        gpu_ns: bin.gpu_ns,
                        cpu_ns: bin.cpu_ns,
                    })),
                }
            })
            .collect();
        let rotate = self.rollup.as_ref().is_none_or(|r| now.saturating_sub(r.opened_ns) >= ROLLUP_SPAN_NS);
        if rotate {
            self.rollup = Some(self.open(SegmentKind::Rollup, now)?);
        }
        match Self::append(self.rollup.as_mut().unwrap(), rotate, &self.info, &records) {
            Ok(n) => {
                self.bytes_written += n;
                // Bins are dropped only once written; a failed write keeps them for next time.
                keys.iter().for_each(|k| {
                    self.bins.remove(k);
                });
                Ok(())
            }
            Err(e) => {
                self.rollup = None;
                Err(e)
            }
        }
    }
}
