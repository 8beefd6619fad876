#!/usr/bin/env python3
"""The soak test's sampler (scripts/soak.sh runs it; docs/PERFORMANCE.md, "Soak"); its judge and
plot are in soak_report.py beside it.
Standard library only.

    scripts/soak.py pids   [--gateway-admin A] [--fanout-admin A] [--sink-admin A]
    scripts/soak.py sample --out DIR --pid gateway=P --pid fanout=P --pid sink=P [--every 10]
                           [--logs DIR] [--clk-tck N] [--*-admin A]
    scripts/soak.py report --dir DIR [--minutes M] [--loadgen-json F] [--loadgen-status 0|1]

`pids` prints the pids of the processes listening on the three stages' admin ports (gateway,
fanout, history sink, on one line), found through /proc/net/tcp and each process's open sockets,
and checks their names. `sample` writes DIR/start.json (pids, their start times, the stages'
log sizes) and then one row of DIR/samples.csv every `--every` seconds until SIGTERM or SIGINT:
per stage its RSS (VmRSS), open fds, threads, CPU seconds (utime + stime / CLK_TCK), consumer
lag and error counters (from its /metrics). `report` judges the run (rules in PASS_RULES below),
writes DIR/summary.json and DIR/soak.svg, prints a verdict line per rule and exits 0 when every
rule holds, 1 otherwise.
"""

import argparse
import csv
import glob
import json
import math
import os
import re
import signal
import statistics
import sys
import time
import urllib.request

STAGES = ("gateway", "fanout", "sink")
# The process names (/proc/PID/comm is cut to 15 bytes).
PROGRAMS = {"gateway": "nearby-gateway", "fanout": "nearby-fanout", "sink": "nearby-history-sink"}
# What scripts/run.sh writes each stage's output to, in the stack's logs folder.
LOG_FILES = {"gateway": "gateway.log", "fanout": "fanout.log", "sink": "history-sink.log"}
DEFAULT_ADMIN = {"gateway": "127.0.0.1:9080", "fanout": "127.0.0.1:9081", "sink": "127.0.0.1:9082"}

# Each consumer's lag on its /metrics (summed over its series: fanout and the sink have one per
# partition, the gateway one for its delivery topic).
LAG = {
    "gateway": "nearby_gateway_delivery_lag",
    "fanout": "nearby_fanout_lag",
    "sink": "nearby_history_sink_lag",
}
# The error counters: (column, metric, label filter or None). Each is summed over its series
# (those whose label matches the filter) and must not rise during the soak.
ERRORS = {
    "gateway": [
        ("delivery_errors", "nearby_gateway_delivery_errors_total", None),
        ("produce_errors", "nearby_gateway_ingest_produce_errors_total", None),
        ("queue_full", "nearby_gateway_ingest_queue_full_total", None),
        # Sessions the gateway cut (`client` and `going_away` are ordinary ends).
        ("sessions_cut", "nearby_gateway_sessions_closed_total",
         ("reason", {"slow", "flood", "too_big", "idle"})),
    ],
    "fanout": [
        ("poison", "nearby_fanout_poison_total", None),
        ("graph_errors", "nearby_fanout_graph_errors_total", None),
        ("deliveries_failed", "nearby_fanout_deliveries_failed_total", None),
        ("deliveries_queue_full", "nearby_fanout_deliveries_queue_full_total", None),
    ],
    "sink": [
        ("retries", "nearby_history_sink_retries_total", None),
        ("poison", "nearby_history_sink_poison_total", None),
        ("abandoned", "nearby_history_sink_abandoned_total", None),
    ],
}
# Labelled families the stages' Prometheus registry (prometheus-client) leaves off the page until
# their first series: absent means none counted yet. Every other counter is always on the page,
# so its absence means a renamed metric, which fails the soak rather than reading as 0.
LABELLED = {"nearby_gateway_delivery_errors_total", "nearby_gateway_sessions_closed_total"}
# Recorded for context, not judged: the load each stage sees.
# `outbox_dropped` counts frames replaced in a slow client's queue by a newer position of the
# same friend (latest-wins, by design): the client still gets the newest, so it is reported, not
# judged (the first 30-minute soak replaced 3 of 8.6 M, its clients on the same two cores).
INFO = {
    "gateway": [
        ("connections", "nearby_gateway_connections"),
        ("outbox_dropped", "nearby_gateway_outbox_dropped_total"),
    ],
    "fanout": [("events", "nearby_fanout_events_total")],
    "sink": [("rows", "nearby_history_sink_rows_total")],
}

WARMUP_MAX_S = 300.0  # the warm-up: the first 5 minutes of the load, or a sixth of a shorter run
RSS_BAND = 0.10  # RSS after the warm-up stays within ±10 % of its median
LAG_WARMUP_FACTOR = 2.0  # lag bound: twice the warm-up's largest lag...
LAG_FLOOR_S = 10.0  # ...and never below 10 s of the offered report rate
LAG_MISSING_SHARE = 0.05  # at most 5 % of the samples after the warm-up without a lag reading
PASS_RULES = f"""\
rss     each stage's RSS at every sample from the end of the warm-up (the first {WARMUP_MAX_S / 60:.0f}
        minutes of the load, or a sixth of a shorter run) to the end of the reporting window is
        within ±{RSS_BAND * 100:.0f} % of its median over those samples
lag     each stage's lag at those samples is at most max({LAG_WARMUP_FACTOR:g} × its largest lag
        during the warm-up, {LAG_FLOOR_S:g} s of the offered report rate = {LAG_FLOOR_S:g} ×
        people / interval), read at no fewer than {100 - LAG_MISSING_SHARE * 100:.0f} % of them
errors  no error counter rose from the first sample to the last, and each was on /metrics (a
        labelled family counts 0 until its first series)
loadgen the load generator exited 0 and its JSON shows counts.error_frames == 0 and
        counts.closed_early == 0
alive   each stage's process is still the one found at the start (same pid and start time), its
        /metrics answered at the last sample, and its log has no "panicked" line written since
        the start
samples the samples cover the load (one from before it starts to one after it ends) with no gap
        longer than 3 sampling periods"""


# --- /proc ------------------------------------------------------------------------------------


def proc_stat(pid):
    """(utime + stime in ticks, start time in ticks) of `pid`, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the `(comm)`: state is field 3, utime 14, stime 15, starttime 22.
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12]), int(fields[19])


def proc_status(pid, key):
    """A number from /proc/PID/status (`VmRSS` in KiB, `Threads`), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def proc_fds(pid):
    """How many files `pid` holds open, or None."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid, starttime):
    """`pid` is still the process that had `starttime` (not gone, not a reused pid)."""
    s = proc_stat(pid)
    return s is not None and s[1] == starttime


def listening_pid(addr):
    """The pid of the process listening on TCP `addr` (host:port), from /proc/net/tcp{,6} and
    the processes' open sockets; raises with what it found otherwise."""
    port = int(addr.rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            continue
    if not inodes:
        raise LookupError(f"nothing listens on port {port}")
    wanted = {f"socket:[{i}]" for i in inodes}
    owners = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    owners.add(int(pid))
                    break
        except OSError:
            continue  # gone, or not ours to read
    if len(owners) != 1:
        raise LookupError(
            f"port {port}: listening socket held by {sorted(owners) or 'no process this user can read'}"
        )
    return owners.pop()


# --- /metrics ---------------------------------------------------------------------------------

SAMPLE_RE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text → (declared family names, [(name, {label: value}, value)])."""
    declared, samples = set(), []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = dict(LABEL_RE.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, value))
    return declared, samples


def metric_sum(parsed, name, label_filter=None):
    """The sum of `name`'s series (those matching `label_filter`); 0 for a family declared with
    no series; None when the page does not have it at all (the stages' registry leaves out a
    labelled family until its first series: see LABELLED)."""
    declared, samples = parsed
    total, seen = 0.0, False
    for n, labels, value in samples:
        if n != name:
            continue
        seen = True
        if label_filter and labels.get(label_filter[0]) not in label_filter[1]:
            continue
        if not math.isnan(value):
            total += value
    if seen:
        return total
    base = name[: -len("_total")] if name.endswith("_total") else name
    return 0.0 if (name in declared or base in declared) else None


def scrape(addr, timeout=3.0):
    """The parsed /metrics page of the admin port `addr`, or None."""
    req = urllib.request.Request(f"http://{addr}/metrics")
    token = os.environ.get("NEARBY_METRICS_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return parse_metrics(r.read().decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001 - any failure is "did not answer"
        return None


# --- sample -----------------------------------------------------------------------------------


def columns():
    cols = ["t_s", "epoch_s"]
    for s in STAGES:
        cols += [f"{s}_{c}" for c in ("alive", "up", "rss_kib", "fds", "threads", "cpu_s", "lag")]
        cols += [f"{s}_{c}" for c, _, _ in ERRORS[s]]
        cols += [f"{s}_{c}" for c, _ in INFO[s]]
    return cols


def take_sample(t0, start, clk_tck):
    row = {"t_s": round(time.monotonic() - t0, 1), "epoch_s": round(time.time(), 3)}
    for s in STAGES:
        pid, starttime = start["pids"][s]["pid"], start["pids"][s]["starttime"]
        stat = proc_stat(pid)
        is_alive = stat is not None and stat[1] == starttime
        row[f"{s}_alive"] = int(is_alive)
        if is_alive:
            row[f"{s}_rss_kib"] = proc_status(pid, "VmRSS")
            row[f"{s}_threads"] = proc_status(pid, "Threads")
            row[f"{s}_fds"] = proc_fds(pid)
            row[f"{s}_cpu_s"] = round(stat[0] / clk_tck, 2)
        parsed = scrape(start["admin"][s])
        row[f"{s}_up"] = int(parsed is not None)
        if parsed is not None:
            # No lag series yet (no statistics since the assignment): unknown, left blank.
            row[f"{s}_lag"] = metric_sum(parsed, LAG[s])
            for col, name, flt in ERRORS[s]:
                v = metric_sum(parsed, name, flt)
                row[f"{s}_{col}"] = 0 if v is None and name in LABELLED else v
            for col, name in INFO[s]:
                row[f"{s}_{col}"] = metric_sum(parsed, name)
    return {k: ("" if v is None else (int(v) if isinstance(v, float) and v.is_integer() else v))
            for k, v in row.items()}


def cmd_pids(args):
    admin = admin_addrs(args)
    pids, problems = [], []
    for s in STAGES:
        try:
            pid = listening_pid(admin[s])
        except LookupError as e:
            problems.append(f"{s} (admin {admin[s]}): {e}")
            continue
        comm = proc_comm(pid) or "?"
        if comm != PROGRAMS[s][:15]:
            problems.append(f"{s} (admin {admin[s]}): pid {pid} is {comm!r}, not {PROGRAMS[s]}")
        pids.append(str(pid))
    if problems:
        for p in problems:
            print(f"soak.py: {p}", file=sys.stderr)
        return 1
    print(" ".join(pids))
    return 0


def cmd_sample(args):
    os.makedirs(args.out, exist_ok=True)
    clk_tck = args.clk_tck or os.sysconf("SC_CLK_TCK")
    given = dict(p.split("=", 1) for p in args.pid)
    start = {
        "started_epoch_s": time.time(),
        "every_s": args.every,
        "clk_tck": clk_tck,
        "admin": admin_addrs(args),
        "pids": {},
        "logs": {},
    }
    for s in STAGES:
        pid = int(given[s])
        stat = proc_stat(pid)
        if stat is None:
            print(f"soak.py: no process {pid} ({s})", file=sys.stderr)
            return 1
        start["pids"][s] = {"pid": pid, "starttime": stat[1], "comm": proc_comm(pid)}
        path = os.path.join(args.logs, LOG_FILES[s]) if args.logs else None
        size = os.path.getsize(path) if path and os.path.exists(path) else None
        start["logs"][s] = {"path": path, "offset": size}
    with open(os.path.join(args.out, "start.json"), "w") as f:
        json.dump(start, f, indent=2)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    # Run in the background by soak.sh, SIGINT is ignored (soak.sh stops it with SIGTERM after
    # the load); run by hand, Ctrl-C stops it the same way.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    t0 = time.monotonic()
    with open(os.path.join(args.out, "samples.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns())
        w.writeheader()
        k = 0
        while True:
            w.writerow(take_sample(t0, start, clk_tck))
            f.flush()
            if stop:
                return 0
            k += 1
            # On the 10 s grid however long a sample took; a stop takes one last sample.
            while not stop and time.monotonic() < t0 + k * args.every:
                time.sleep(min(0.25, max(0.0, t0 + k * args.every - time.monotonic())))



# --- main -------------------------------------------------------------------------------------


def admin_addrs(args):
    return {"gateway": args.gateway_admin, "fanout": args.fanout_admin, "sink": args.sink_admin}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def admin_flags(q):
        for s in STAGES:
            q.add_argument(f"--{s}-admin", default=DEFAULT_ADMIN[s], help=f"the {s}'s admin address")

    q = sub.add_parser("pids", help="the stages' pids, from their admin ports")
    admin_flags(q)
    q = sub.add_parser("sample", help="sample the stages until SIGTERM")
    admin_flags(q)
    q.add_argument("--out", required=True)
    q.add_argument("--pid", action="append", default=[], help="STAGE=PID, for gateway, fanout and sink")
    q.add_argument("--every", type=float, default=10.0)
    q.add_argument("--logs", help="the folder of the stages' logs (scripts/run.sh's)")
    q.add_argument("--clk-tck", type=int, help="clock ticks a second (getconf CLK_TCK)")
    q = sub.add_parser("report", help="judge a soak, write summary.json and soak.svg")
    q.add_argument("--dir", required=True)
    q.add_argument("--minutes", type=float, help="the run's length, if the loadgen JSON is missing")
    q.add_argument("--loadgen-json")
    q.add_argument("--loadgen-status", type=int, default=1, help="1 if the load generator exited 0")
    args = p.parse_args()
    if args.cmd == "sample" and sorted(dict(x.split("=", 1) for x in args.pid)) != sorted(STAGES):
        p.error("sample needs --pid gateway=P --pid fanout=P --pid sink=P")
    if args.cmd == "report":
        # The judge lives beside this file (imported only when judging).
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from soak_report import cmd_report

        return cmd_report(args)
    return {"pids": cmd_pids, "sample": cmd_sample}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
