#!/usr/bin/env python3
"""bench_report.py RESULTS.tsv OUT.json: the report of scripts/bench.sh.

Reads the raw lines bench.sh wrote (meta, mem and run lines, tab-separated),
prints the tables and the one-line summary, and writes everything, raw runs
included, as JSON to OUT.json.

CPU per transaction pools the rounds: the middle process's CPU ticks summed
over a target's runs, divided by the transactions summed over them (so a
short round weighs less). tps is the median of the rounds.
"""

import json
import os
import statistics
import sys

CLK_TCK = int(os.environ.get("CLK_TCK", "100"))


def read(path):
    meta, mem, runs, counts = {}, [], [], {}
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "meta":
                meta[p[1]] = p[2]
            elif p[0] == "mem":
                target, n, before, after, hb, ha = p[1:7]
                mem.append({
                    "target": target, "sessions": int(n),
                    "rss_before_kib": int(before), "rss_after_kib": int(after),
                    "rss_per_session_kib": (int(after) - int(before)) / int(n),
                    "go_heap_before_kib": int(hb) if hb else None,
                    "go_heap_after_kib": int(ha) if ha else None,
                    "go_heap_per_session_kib": (int(ha) - int(hb)) / int(n) if hb and ha else None,
                })
            elif p[0] == "count":
                target, mode, txns, event, n = p[1:6]
                counts.setdefault((target, mode), {"target": target, "mode": mode, "transactions": int(txns)})[event] = int(n)
            elif p[0] == "run":
                suite, kind, target, mode, clients, rnd, tps, txns, lat, cpu = p[1:11]
                # Postgres runs since 2026-12-07 also carry the server's
                # CPU ticks and the machine's idle share, and later
                # pgbench's own CPU in microseconds.
                server, idle, client = (p[11:14] + ["", "", ""])[:3]
                runs.append({
                    "suite": suite, "kind": kind, "target": target, "mode": mode,
                    "clients": int(clients), "round": int(rnd), "tps": float(tps),
                    "transactions": int(txns), "latency_ms": float(lat),
                    "cpu_ticks": int(cpu) if cpu else None,
                    "cpu_us_per_txn": int(cpu) * 1e6 / CLK_TCK / int(txns) if cpu else None,
                    "server_cpu_ticks": int(server) if server else None,
                    "machine_idle_pct": float(idle) if idle else None,
                    "client_cpu_us": int(client) if client else None,
                })
    return meta, mem, runs, list(counts.values())


def ordered(values):
    """Distinct values in first-seen order."""
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def aggregate(runs, kind):
    """One row per (suite, mode, target) of the runs of kind."""
    rows = []
    sel = [r for r in runs if r["kind"] == kind]
    for suite in ordered(r["suite"] for r in sel):
        for mode in ordered(r["mode"] for r in sel if r["suite"] == suite):
            group = [r for r in sel if r["suite"] == suite and r["mode"] == mode]
            direct = [r for r in group if r["target"] == "direct"]
            d_tps = statistics.median(r["tps"] for r in direct) if direct else None
            d_lat = statistics.median(r["latency_ms"] for r in direct) if direct else None
            for target in ordered(r["target"] for r in group):
                rs = [r for r in group if r["target"] == target]
                tps = statistics.median(r["tps"] for r in rs)
                lat = statistics.median(r["latency_ms"] for r in rs)
                cpu = None
                if all(r["cpu_ticks"] is not None for r in rs):
                    cpu = sum(r["cpu_ticks"] for r in rs) * 1e6 / CLK_TCK / sum(r["transactions"] for r in rs)
                server = None
                if all(r.get("server_cpu_ticks") is not None for r in rs):
                    server = sum(r["server_cpu_ticks"] for r in rs) * 1e6 / CLK_TCK / sum(r["transactions"] for r in rs)
                client = None
                if all(r.get("client_cpu_us") is not None for r in rs):
                    client = sum(r["client_cpu_us"] for r in rs) / sum(r["transactions"] for r in rs)
                idles = [r["machine_idle_pct"] for r in rs if r.get("machine_idle_pct") is not None]
                rows.append({
                    "suite": suite, "mode": mode, "target": target, "clients": rs[0]["clients"],
                    "server_cpu_us_per_txn": server,
                    "client_cpu_us_per_txn": client,
                    "machine_idle_pct": statistics.median(idles) if idles else None,
                    "median_tps": tps, "tps_vs_direct": tps / d_tps if d_tps else None,
                    "latency_ms": lat,
                    "added_latency_us": (lat - d_lat) * 1000 if d_lat is not None and target != "direct" else None,
                    "cpu_us_per_txn": cpu,
                    "round_tps": [r["tps"] for r in rs],
                    "round_cpu_us_per_txn": [r["cpu_us_per_txn"] for r in rs],
                })
    return rows


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def pct(v):
    return "-" if v is None else f"{v:.0f}%"


def find(rows, target, mode, suite="pg"):
    for r in rows:
        if r["suite"] == suite and r["target"] == target and r["mode"] == mode:
            return r
    return None


def summary(thr, lat, mem):
    """The one-line summary: keyhole against PgBouncer (and the naive relay)."""
    parts = []
    modes = ordered(r["mode"] for r in thr if r["suite"] == "pg")
    cpu = []
    for m in modes:
        k, b, n = find(thr, "keyhole", m), find(thr, "pgbouncer", m), find(thr, "naive", m)
        base, floor = find(thr, "keyhole-base", m), find(thr, "epoll", m)
        if k and k["cpu_us_per_txn"] is not None:
            s = f"{m} {k['cpu_us_per_txn']:.1f}"
            others = []
            if base:
                others.append(f"keyhole-base {base['cpu_us_per_txn']:.1f}")
            if b:
                others.append(f"PgBouncer {b['cpu_us_per_txn']:.1f}")
            if n:
                others.append(f"naive {n['cpu_us_per_txn']:.1f}")
            if floor:
                others.append(f"Go relay floor {floor['cpu_us_per_txn']:.1f}")
            if others:
                s += " (" + ", ".join(others) + ")"
            cpu.append(s)
    if cpu:
        parts.append("keyhole CPU us/txn " + "; ".join(cpu))
    ratios = []
    for m in modes:
        k, b = find(thr, "keyhole", m), find(thr, "pgbouncer", m)
        if k and k["tps_vs_direct"] is not None:
            s = f"{m} {k['tps_vs_direct']:.2f}"
            if b:
                s += f" (PgBouncer {b['tps_vs_direct']:.2f})"
            ratios.append(s)
    if ratios:
        parts.append("tps x direct " + "; ".join(ratios))
    for key, label in (("server_cpu_us_per_txn", "Postgres"), ("client_cpu_us_per_txn", "pgbench")):
        other = []
        for m in modes:
            k, b = find(thr, "keyhole", m), find(thr, "pgbouncer", m)
            if k and k.get(key) is not None:
                s = f"{m} {k[key]:.1f}"
                if b and b.get(key) is not None:
                    s += f" (PgBouncer {b[key]:.1f})"
                other.append(s)
        if other:
            parts.append(f"{label} CPU us/txn " + "; ".join(other))
    added = []
    for m in ordered(r["mode"] for r in lat if r["suite"] == "pg"):
        k, b = find(lat, "keyhole", m), find(lat, "pgbouncer", m)
        if k and k["added_latency_us"] is not None:
            s = f"{m} {k['added_latency_us']:+.0f}"
            if b:
                s += f" (PgBouncer {b['added_latency_us']:+.0f})"
            added.append(s)
    if added:
        parts.append("added latency us/statement " + "; ".join(added))
    my = []
    for m in ordered(r["mode"] for r in thr if r["suite"] == "mysql"):
        k, n = find(thr, "keyhole", m, "mysql"), find(thr, "naive", m, "mysql")
        if k and k["cpu_us_per_txn"] is not None:
            s = f"{m} {k['cpu_us_per_txn']:.1f} us/query, {fmt(k['tps_vs_direct'], '.2f')}x direct"
            if n and n["cpu_us_per_txn"] is not None:
                s += f" (naive {n['cpu_us_per_txn']:.1f}, {fmt(n['tps_vs_direct'], '.2f')}x)"
            my.append(s)
    if my:
        parts.append("mysql keyhole " + "; ".join(my))
    km = next((x for x in mem if x["target"] == "keyhole"), None)
    bm = next((x for x in mem if x["target"] == "pgbouncer"), None)
    if km:
        s = f"idle session {km['rss_per_session_kib']:.1f} KiB"
        if bm:
            s += f" (PgBouncer {bm['rss_per_session_kib']:.1f})"
        parts.append(s)
    return "summary: " + " | ".join(parts) if parts else "summary: nothing measured"


def main():
    results, out = sys.argv[1], sys.argv[2]
    meta, mem, runs, counts = read(results)
    thr, lat = aggregate(runs, "throughput"), aggregate(runs, "latency")
    line = summary(thr, lat, mem)

    label = f" [{meta['label']}]" if meta.get("label") else ""
    print(f"keyhole bench{label} {meta.get('date', '')}  commit {meta.get('commit', '?')}  "
          f"{meta.get('cpus', '?')} CPUs  load average {meta.get('loadavg_start', '?')} at start, "
          f"{meta.get('loadavg_end', '?')} at end")
    print(f"{meta.get('pgbench', '')}; {meta.get('pgbouncer', '')}; {meta.get('go', '')}")
    print(meta.get("settings", ""))
    if meta.get("mysql_settings"):
        print(f"mysql: {meta.get('mysql_server', '')}; {meta.get('sysbench', '')}; {meta['mysql_settings']}")
    for suite in ordered(r["suite"] for r in thr):
        unit = "query (sysbench oltp_point_select; tps = queries/s)" if suite == "mysql" else "transaction"
        print(f"\nthroughput ({suite}): median tps of the rounds; CPU = middle process's utime+stime per {unit}")
        if suite == "pg":
            print("server = the Postgres server's CPU per transaction (all its processes); client = pgbench's; "
                  "idle = the machine's idle share")
        print(f"{'target':<15} {'mode':<12} {'tps':>9} {'x direct':>9} {'CPU us/txn':>11} {'server us':>9} "
              f"{'client us':>9} {'idle':>5}   rounds: tps / CPU us/txn")
        for r in (x for x in thr if x["suite"] == suite):
            rounds = ", ".join(
                f"{t:.0f}" + (f"/{c:.1f}" if c is not None else "")
                for t, c in zip(r["round_tps"], r["round_cpu_us_per_txn"]))
            print(f"{r['target']:<15} {r['mode']:<12} {r['median_tps']:>9.0f} {fmt(r['tps_vs_direct'], '8.2f'):>8}x "
                  f"{fmt(r['cpu_us_per_txn'], '11.1f'):>11} {fmt(r.get('server_cpu_us_per_txn'), '9.1f'):>9} "
                  f"{fmt(r.get('client_cpu_us_per_txn'), '9.1f'):>9} {pct(r.get('machine_idle_pct')):>5}   {rounds}")
    for suite in ordered(r["suite"] for r in lat):
        print(f"\nlatency ({suite}), 1 client: median pgbench latency average; added = target - direct")
        print(f"{'target':<15} {'mode':<12} {'latency ms':>11} {'added us':>9} {'CPU us/txn':>11}")
        for r in (x for x in lat if x["suite"] == suite):
            print(f"{r['target']:<15} {r['mode']:<12} {r['latency_ms']:>11.3f} {fmt(r['added_latency_us'], '+9.1f'):>9} "
                  f"{fmt(r['cpu_us_per_txn'], '11.1f'):>11}")
    if mem:
        print(f"\nmemory: resident set of the middle process with {mem[0]['sessions']} idle sessions "
              "(each ran one statement)")
        print(f"{'target':<15} {'RSS before':>11} {'RSS after':>10} {'KiB/session':>12} {'Go heap KiB/session':>20}")
        for m in mem:
            print(f"{m['target']:<15} {m['rss_before_kib']:>8} KiB {m['rss_after_kib']:>6} KiB "
                  f"{m['rss_per_session_kib']:>12.1f} {fmt(m['go_heap_per_session_kib'], '20.1f'):>20}")
    if counts:
        events = ["syscalls", "read", "write", "recvfrom", "sendto", "epoll_wait", "epoll_pwait", "futex",
                  "nanosleep", "context-switches", "cpu-migrations"]
        print("\nper transaction under the throughput load (perf stat on the middle process)")
        print(f"{'target':<15} {'mode':<9} " + " ".join(f"{e.replace('context-switches', 'ctxsw').replace('cpu-migrations', 'migr'):>9}" for e in events))
        for c in counts:
            n = c["transactions"] or 1
            print(f"{c['target']:<15} {c['mode']:<9} " + " ".join(f"{c.get(e, 0) / n:>9.2f}" for e in events))
    print()
    print(line)

    with open(out, "w") as f:
        json.dump({"meta": meta, "throughput": thr, "latency": lat, "memory": mem, "per_transaction_counts": counts,
                   "runs": runs, "summary": line}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
