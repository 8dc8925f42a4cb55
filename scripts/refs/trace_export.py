#!/usr/bin/env python3
"""Checks Strata's trace exports with parsers we did not write.

The Rust test `strata-trace/tests/analysis.rs` writes game.pftrace (Perfetto protobuf),
game.json (Chrome JSON) and game.expected.json (what they should contain) into DIR. This script
parses the protobuf with the `perfetto` package's generated `perfetto_trace_pb2` and the JSON
with `json`, rebuilds the same summary (slices per track and name, instants, counter samples and
sums, state labels per domain track in order) and compares it with the expectation.

    python scripts/refs/trace_export.py DIR
"""
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb


def base_track(name: str) -> str:
    """Overlapping slices go to extra lanes named "TRACK (2)", "TRACK (3)", ...: one track here."""
    return re.sub(r" \(\d+\)$", "", name)


def summarise_perfetto(data: bytes) -> dict:
    trace = pb.Trace.FromString(data)
    names = {}
    for p in trace.packet:
        if p.HasField("track_descriptor"):
            td = p.track_descriptor
            if td.HasField("thread"):
                names[td.uuid] = td.thread.thread_name
            elif td.HasField("process"):
                names[td.uuid] = td.process.process_name
            else:
                names[td.uuid] = td.name
    slices, counters, states = defaultdict(int), defaultdict(lambda: [0, 0.0]), defaultdict(list)
    instants = 0
    stacks = defaultdict(list)
    last_ts = 0
    TE = pb.TrackEvent
    for p in trace.packet:
        if not p.HasField("track_event"):
            continue
        assert p.timestamp >= last_ts, "packets are in time order"
        last_ts = p.timestamp
        ev = p.track_event
        track = base_track(names[ev.track_uuid])
        if ev.type == TE.TYPE_SLICE_BEGIN:
            stack = stacks[ev.track_uuid]
            assert not stack or stack[-1][1] <= p.timestamp, "a slice begins inside its lane's open slice"
            stack.append((ev.name, p.timestamp))
            if track.startswith("state: "):
                states[track].append(ev.name)
            else:
                slices[f"{track}/{ev.name}"] += 1
        elif ev.type == TE.TYPE_SLICE_END:
            assert stacks[ev.track_uuid], f"slice end without a begin on {track}"
            stacks[ev.track_uuid].pop()
        elif ev.type == TE.TYPE_INSTANT:
            instants += 1
        elif ev.type == TE.TYPE_COUNTER:
            c = counters[track]
            c[0] += 1
            c[1] += ev.double_counter_value
    assert all(not s for s in stacks.values()), "every slice ends"
    return finish(slices, instants, counters, states)


def summarise_chrome(data: bytes) -> dict:
    events = json.loads(data)["traceEvents"]
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    slices, counters, states = defaultdict(int), defaultdict(lambda: [0, 0.0]), defaultdict(list)
    instants = 0
    for e in sorted((e for e in events if e["ph"] != "M"), key=lambda e: e["ts"]):
        if e["ph"] == "X":
            track = threads[(e["pid"], e["tid"])]
            if track.startswith("state: "):
                states[track].append(e["name"])
            else:
                slices[f"{track}/{e['name']}"] += 1
        elif e["ph"] == "i":
            instants += 1
        elif e["ph"] == "C":
            c = counters[e["name"]]
            c[0] += 1
            c[1] += e["args"]["value"]
    return finish(slices, instants, counters, states)


def finish(slices, instants, counters, states) -> dict:
    return {
        "slices": dict(slices),
        "instants": instants,
        "counters": {k: {"count": n, "sum": s} for k, (n, s) in counters.items()},
        "states": dict(states),
    }


def same(a, b, path="") -> list:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: missing on one side" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += same(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, float) or isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-12) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main() -> int:
    d = Path(sys.argv[1])
    expected = json.loads((d / "game.expected.json").read_text())
    problems = []
    for name, got in [
        ("perfetto", summarise_perfetto((d / "game.pftrace").read_bytes())),
        ("chrome-json", summarise_chrome((d / "game.json").read_bytes())),
    ]:
        diffs = same(expected, got)
        problems += [f"{name}: {x}" for x in diffs]
        n = sum(got["slices"].values())
        print(f"{name}: {n} slices, {got['instants']} instants, "
              f"{sum(c['count'] for c in got['counters'].values())} counter samples, "
              f"states {got['states']}: {'ok' if not diffs else 'MISMATCH'}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
