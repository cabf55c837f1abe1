#!/usr/bin/env python3
"""profile_areas.py: where keyhole's CPU goes, grouped by area.

    profile_areas.py pprof RAW.txt  [--txns N]   # go tool pprof -raw output
    profile_areas.py perf  SCRIPT.txt [--txns N] # perf script output (kernel too)

Every sample goes to exactly one area, by the first rule below that
matches a frame of its stack (leaf to root), so the areas add up to 100 %.
With --txns (transactions during the profile) each area is also given in
CPU microseconds per transaction. For each area the five hottest leaf
functions follow.

The order of the rules decides what wins when a stack touches two areas:
an allocation inside the decision counts as decision, a write syscall of
the audit writer as audit.
"""

import argparse
import collections
import re
import sys

# (area, predicate over the list of frames, leaf first)
def has(*subs):
    return lambda frames: any(any(s in f for s in subs) for f in frames)


def has_exact(*names):
    names = set(names)
    return lambda frames: any(f in names for f in frames)


RULES = [
    ("GC (background mark/sweep)", has_exact("runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge")),
    ("audit: writer goroutine (batch, write(2))", has("keyhole/audit.(*pipeline).run")),
    ("audit: Record (encode, queue)", has("keyhole/audit.")),
    ("approvals (recorder, store writer, SQLite)", has("keyhole/approval.", "keyhole/store.", "mattn/go-sqlite3")),
    ("metrics (Prometheus)", has("keyhole/admin.", "prometheus/client_golang")),
    ("decision (sqlpolicy, pganalyze, pg_query)", has("keyhole/sqlpolicy", "pg_query")),
    # C code (pg_query's parser, libc) has no frame pointers, so perf sees
    # only its leaf: a stack without one Go (dotted) name.
    ("pg_query C code (perf: leaf only)", lambda frames: bool(frames) and not any("." in f for f in frames)),
    ("logging (slog)", has("log/slog.")),
    # mysqlproxy's request writes the command and reads the answer itself,
    # inside RawConn.Read (internal/poll.(*FD).RawRead).
    ("socket write (write(2), poll)", lambda frames: "syscall.write" in frames and "internal/poll.(*FD).RawRead" in frames),
    ("socket read (read(2), poll)", has_exact("net.(*conn).Read", "internal/poll.(*FD).Read", "internal/poll.(*FD).RawRead")),
    ("socket write (write(2), poll)", has_exact("net.(*conn).Write", "internal/poll.(*FD).Write",
                                               "internal/poll.(*FD).Writev", "net.(*Buffers).WriteTo")),
    ("scheduler (park, wake, netpoll, idle threads)", has_exact(
        "runtime.schedule", "runtime.findRunnable", "runtime.park_m", "runtime.gopark", "runtime.goready",
        "runtime.ready", "runtime.wakep", "runtime.startm", "runtime.stopm", "runtime.notewakeup",
        "runtime.notesleep", "runtime.netpoll", "runtime.mstart", "runtime.mstart1", "runtime.goexit0",
        "runtime.gosched_m", "runtime.injectglist", "runtime.exitsyscall", "runtime.entersyscall",
        "runtime.reentersyscall", "runtime.entersyscallblock", "runtime.handoffp", "runtime.futexwakeup",
        "runtime.futexsleep", "runtime.newproc")),
    ("runtime sysmon", has_exact("runtime.sysmon")),
    ("pgproto3 decode/encode", has("jackc/pgx/v5/pgproto3.")),
    ("allocation (mallocgc, GC assist)", has_exact("runtime.mallocgc", "runtime.newobject", "runtime.makeslice",
                                                   "runtime.growslice", "runtime.gcAssistAlloc")),
    ("relay (pgproxy's own code)", has("keyhole/pgproxy.")),
    ("timers (time.Now, timer reset)", has("time.Now", "runtime.nanotime", "time.(*Timer)", "runtime.modtimer",
                                           "runtime.(*timer)")),
]
OTHER = "other"


def read_pprof_raw(f):
    """Samples of `go tool pprof -raw`: (weight ns, frames leaf first, leaf in kernel?)."""
    lines = f.read().splitlines()
    i = lines.index("Samples:") + 2
    samples = []
    while i < len(lines) and lines[i].strip() and not lines[i].startswith("Locations"):
        m = re.match(r"\s*(\d+)\s+(\d+):\s*([\d ]+)", lines[i])
        if m:
            samples.append((int(m.group(2)), [int(x) for x in m.group(3).split()]))
        i += 1
    locs = {}
    j = lines.index("Locations") + 1
    cur = None
    while j < len(lines):
        line = lines[j]
        m = re.match(r"\s*(\d+): 0x[0-9a-f]+ M=\d+ (\S+)", line)
        if m:
            cur = int(m.group(1))
            locs[cur] = [m.group(2)]
        elif cur is not None and line.startswith("             "):
            # An inlined caller of the location above.
            locs[cur].append(line.split()[0])
        elif line and not line.startswith(" "):
            break
        j += 1
    out = []
    for w, ids in samples:
        frames = [fn for loc in ids for fn in locs.get(loc, ["?"])]
        out.append((w, frames, False))
    return out


def read_perf_script(f):
    """Samples of `perf script`: (weight ns, frames leaf first, leaf in kernel?)."""
    out = []
    weight, frames, kernel = None, [], False
    for line in f:
        line = line.rstrip("\n")
        if not line.strip():
            if weight is not None:
                out.append((weight, frames, kernel))
            weight, frames, kernel = None, [], False
            continue
        if not line[0].isspace():
            m = re.search(r"\s(\d+) cpu-clock", line)
            weight = int(m.group(1)) if m else 1
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        sym, _, dso = parts[1].rpartition(" (")
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        if not frames:
            kernel = "kernel" in dso
        frames.append(sym)
    if weight is not None:
        out.append((weight, frames, kernel))
    return out


def classify(frames):
    for name, pred in RULES:
        if pred(frames):
            return name
    return OTHER


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["pprof", "perf"])
    ap.add_argument("file")
    ap.add_argument("--txns", type=float, default=0, help="transactions during the profile")
    args = ap.parse_args()
    with open(args.file, errors="replace") as f:
        samples = read_pprof_raw(f) if args.kind == "pprof" else read_perf_script(f)
    total = sum(w for w, _, _ in samples)
    if not total:
        print("no samples")
        return
    area_w = collections.Counter()
    area_kernel = collections.Counter()
    leaf_w = collections.defaultdict(collections.Counter)
    for w, frames, kernel in samples:
        a = classify(frames)
        area_w[a] += w
        if kernel:
            area_kernel[a] += w
        leaf_w[a][frames[0] if frames else "?"] += w
    print(f"{args.kind}: {total / 1e9:.2f} s CPU sampled"
          + (f", {args.txns:.0f} transactions: {total / 1e3 / args.txns:.1f} us CPU per transaction" if args.txns else ""))
    head = f"{'area':<48} {'share':>6}"
    if args.kind == "perf":
        head += f" {'kernel':>7}"
    if args.txns:
        head += f" {'us/txn':>7}"
    print(head)
    for a, w in area_w.most_common():
        row = f"{a:<48} {100 * w / total:>5.1f}%"
        if args.kind == "perf":
            row += f" {100 * area_kernel[a] / w:>6.0f}%"
        if args.txns:
            row += f" {w / 1e3 / args.txns:>7.2f}"
        print(row)
    print("\nhottest leaf functions per area (share of all samples):")
    for a, _ in area_w.most_common():
        tops = ", ".join(f"{fn} {100 * w / total:.1f}%" for fn, w in leaf_w[a].most_common(5))
        print(f"  {a}: {tops}")


if __name__ == "__main__":
    sys.exit(main())
