#!/usr/bin/env python3
"""The soak test's judge and plot (scripts/soak.py report runs it): reads a soak's samples.csv,
judges it by the rules in soak.py's PASS_RULES, writes summary.json and soak.svg. Standard
library only. Kept apart from the sampler so each file stays short."""

import csv
import glob
import json
import math
import os
import re
import statistics

from soak import (
    ERRORS,
    INFO,
    LAG,
    LAG_FLOOR_S,
    LAG_MISSING_SHARE,
    LAG_WARMUP_FACTOR,
    PASS_RULES,
    RSS_BAND,
    STAGES,
    WARMUP_MAX_S,
    alive,
)

# --- report -----------------------------------------------------------------------------------


def read_rows(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in r.items()})
    return rows


def find_loadgen_json(d):
    best = None
    for path in glob.glob(os.path.join(d, "*.json")):
        if os.path.basename(path) in ("start.json", "summary.json"):
            continue
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "counts" in doc and "started_at_ms" in doc:
            if best is None or doc["started_at_ms"] > best[1]["started_at_ms"]:
                best = (path, doc)
    return best


def log_panics(log):
    """Lines with "panicked" written to a stage's log since the soak started, and ERROR lines."""
    path, offset = log.get("path"), log.get("offset") or 0
    if not path or not os.path.exists(path):
        return None, None
    with open(path, "rb") as f:
        if os.path.getsize(path) >= offset:
            f.seek(offset)  # (a smaller file was started again: read it all)
        text = f.read().decode("utf-8", "replace")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
    panics = [line for line in plain if "panicked" in line]
    errors = [line for line in plain if re.search(r"\bERROR\b", line)]
    return panics, errors


def series(rows, key, lo=None, hi=None):
    return [r[key] for r in rows if r.get(key) is not None
            and (lo is None or r["epoch_s"] >= lo) and (hi is None or r["epoch_s"] <= hi)]


def slope_per_hour(rows, key, lo, hi):
    pts = [(r["epoch_s"], r[key]) for r in rows if r.get(key) is not None and lo <= r["epoch_s"] <= hi]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return None if den == 0 else sum((p[0] - mx) * (p[1] - my) for p in pts) / den * 3600


def cmd_report(args):
    d = args.dir
    with open(os.path.join(d, "start.json")) as f:
        start = json.load(f)
    rows = read_rows(os.path.join(d, "samples.csv"))
    if not rows:
        print("soak: FAIL: no samples", file=sys.stderr)
        return 1
    if args.loadgen_json:
        with open(args.loadgen_json) as f:
            found = (args.loadgen_json, json.load(f))
    else:
        found = find_loadgen_json(d)
    lg_path, lg = found if found else (None, None)

    # The reporting window and its warm-up.
    if lg:
        load_start = lg["started_at_ms"] / 1000
        duration = float(lg["parameters"]["duration_s"])
        people = float(lg["parameters"]["people"])
        interval = float(lg["parameters"]["interval_s"])
    else:
        load_start = rows[0]["epoch_s"]
        duration = (args.minutes or 30) * 60.0
        people, interval = 5000.0, 30.0
    load_end = load_start + duration
    warmup = min(WARMUP_MAX_S, duration / 6)
    judged_from = load_start + warmup
    lag_floor = LAG_FLOOR_S * people / interval

    verdicts = []  # (rule, ok, text)

    def verdict(rule, ok, text):
        verdicts.append((rule, bool(ok), text))

    # The samples cover the load: one before it, one after its end, no gap of 3 periods.
    every = float(start.get("every_s") or 10)
    times = [r["epoch_s"] for r in rows]
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    covered = times[0] <= load_start + every and times[-1] >= load_end - every and gap <= 3 * every
    verdict("samples", covered,
            f"{len(rows)} samples from {(times[0] - load_start) / 60:+.1f} to {(times[-1] - load_start) / 60:+.1f} min "
            f"of the load ({duration / 60:g} min), longest gap {gap:.0f} s")

    stages, quotes = {}, []
    for s in STAGES:
        st = {}
        rss = series(rows, f"{s}_rss_kib", judged_from, load_end)
        if len(rss) >= 2:
            med = statistics.median(rss)
            lo, hi = min(rss), max(rss)
            ok = lo >= med * (1 - RSS_BAND) and hi <= med * (1 + RSS_BAND)
            st["rss_kib"] = {
                "at_warmup_end": rss[0], "end": rss[-1], "min": lo, "max": hi, "median": med,
                "band_kib": [round(med * (1 - RSS_BAND)), round(med * (1 + RSS_BAND))],
                "slope_kib_per_h": round(slope_per_hour(rows, f"{s}_rss_kib", judged_from, load_end) or 0, 1),
                "first_sample": series(rows, f"{s}_rss_kib")[0],
                "samples_judged": len(rss),
            }
            verdict("rss", ok, f"{s}: RSS {lo / 1024:.1f}–{hi / 1024:.1f} MiB after the warm-up, median "
                               f"{med / 1024:.1f} MiB ({(lo / med - 1) * 100:+.1f} % / {(hi / med - 1) * 100:+.1f} %; "
                               f"{len(rss)} samples; trend {st['rss_kib']['slope_kib_per_h'] / 1024:+.1f} MiB/h)")
        else:
            verdict("rss", False, f"{s}: only {len(rss)} RSS samples after the warm-up")

        fds = series(rows, f"{s}_fds", judged_from, load_end)
        if fds:
            st["fds"] = {"first_sample": series(rows, f"{s}_fds")[0], "at_warmup_end": fds[0],
                         "end": fds[-1], "min": min(fds), "max": max(fds)}
        threads = series(rows, f"{s}_threads", judged_from, load_end)
        if threads:
            st["threads"] = {"min": min(threads), "max": max(threads)}
        cpu_all = series(rows, f"{s}_cpu_s")
        cpu_win = series(rows, f"{s}_cpu_s", judged_from, load_end)
        if cpu_all:
            st["cpu_s"] = {"soak": round(cpu_all[-1] - cpu_all[0], 2)}
            if len(cpu_win) >= 2:
                span = [r["epoch_s"] for r in rows if r.get(f"{s}_cpu_s") is not None
                        and judged_from <= r["epoch_s"] <= load_end]
                st["cpu_s"]["after_warmup"] = round(cpu_win[-1] - cpu_win[0], 2)
                st["cpu_s"]["after_warmup_share_of_a_core"] = round(
                    (cpu_win[-1] - cpu_win[0]) / max(1e-9, span[-1] - span[0]), 4)

        warm_lag = series(rows, f"{s}_lag", None, judged_from)
        lag = series(rows, f"{s}_lag", judged_from, load_end)
        bound = max(LAG_WARMUP_FACTOR * max(warm_lag, default=0), lag_floor)
        st["lag"] = {"warmup_max": max(warm_lag, default=None), "max": max(lag, default=None),
                     "end": lag[-1] if lag else None, "bound": round(bound),
                     "mean": round(statistics.fmean(lag), 1) if lag else None,
                     "whole_soak_max": max(series(rows, f"{s}_lag"), default=None)}
        judged_n = sum(1 for r in rows if judged_from <= r["epoch_s"] <= load_end)
        missing = judged_n - len(lag)
        st["lag"]["samples_without"] = missing
        if lag:
            verdict("lag", max(lag) <= bound and missing <= LAG_MISSING_SHARE * judged_n,
                    f"{s}: lag at most {max(lag):.0f} after the warm-up (mean {st['lag']['mean']:.0f}), "
                    f"bound {bound:.0f} (warm-up max {max(warm_lag, default=0):.0f})"
                    + (f"; no reading at {missing} of {judged_n} samples" if missing else ""))
        else:
            verdict("lag", False, f"{s}: no lag reading after the warm-up ({LAG[s]} not on /metrics?)")

        errs = {}
        for col, name, flt in ERRORS[s]:
            vals = series(rows, f"{s}_{col}")
            label = name + (f"{{{flt[0]}={'|'.join(sorted(flt[1]))}}}" if flt else "")
            if not vals:
                errs[col] = {"metric": label, "first": None, "last": None, "rise": None}
                verdict("errors", False, f"{s}: {label} never read (not on /metrics?)")
                continue
            rise = vals[-1] - vals[0]
            errs[col] = {"metric": label, "first": vals[0], "last": vals[-1], "rise": rise}
            if rise != 0:
                verdict("errors", False, f"{s}: {label} rose by {rise:.0f} ({vals[0]:.0f} → {vals[-1]:.0f})")
        st["errors"] = errs
        if all(e["rise"] == 0 for e in errs.values()):
            verdict("errors", True, f"{s}: no error counter rose ({', '.join(errs)})")
        st["info"] = {col: series(rows, f"{s}_{col}")[-1] if series(rows, f"{s}_{col}") else None
                      for col, _ in INFO[s]}

        p = start["pids"][s]
        still = alive(p["pid"], p["starttime"])
        answered = rows[-1].get(f"{s}_up") == 1
        panics, log_errors = log_panics(start["logs"].get(s, {}))
        st["alive"] = {"pid": p["pid"], "running": still, "metrics_at_last_sample": answered,
                       "log": start["logs"].get(s, {}).get("path"),
                       "panicked_lines": panics, "error_lines": len(log_errors) if log_errors is not None else None}
        ok = still and answered and not panics
        what = [f"pid {p['pid']} " + ("running" if still else "GONE"),
                "/metrics answered" if answered else "/metrics did NOT answer at the last sample",
                "no log read" if panics is None else f"{len(panics)} 'panicked' lines",
                "" if log_errors is None else f"{len(log_errors)} ERROR log lines"]
        verdict("alive", ok and panics is not None, f"{s}: " + ", ".join(w for w in what if w))
        quotes += [f"  {s} log: {line[:300]}" for line in (panics or [])[:3]]
        stages[s] = st

    loadgen = None
    if lg:
        c = lg["counts"]
        loadgen = {
            "json": lg_path, "exit_ok": bool(args.loadgen_status),
            "counts": c, "reports_per_s": lg.get("reports_per_s"),
            "deliveries_per_s": lg.get("deliveries_per_s"),
            "latency_ms": {k: lg["latency"].get(k) for k in ("count", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
            "latency_steady_ms": {k: lg["latency_steady"].get(k) for k in ("count", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
        }
        ok = c.get("error_frames", 1) == 0 and c.get("closed_early", 1) == 0 and args.loadgen_status
        verdict("loadgen", ok,
                f"{c['reports']} reports, {c['friend_locations']} deliveries, {c['error_frames']} error frames"
                f"{' ' + json.dumps(c['errors']) if c.get('errors') else ''}, {c['closed_early']} sockets closed early, exit "
                f"{'0' if args.loadgen_status else 'non-zero'}; latency after the first interval p50 "
                f"{fmt(lg['latency_steady'].get('p50_ms'))} / p99 {fmt(lg['latency_steady'].get('p99_ms'))} ms")
    else:
        verdict("loadgen", False, ("the load generator exited 0" if args.loadgen_status else
                                   "the load generator failed") + f" and left no JSON in {d} (see loadgen.log)")

    passed = all(ok for _, ok, _ in verdicts)
    summary = {
        "passed": passed,
        "rules": PASS_RULES,
        "window": {
            "samples": len(rows), "every_s": start.get("every_s"),
            "load_start_epoch_s": load_start, "duration_s": duration, "warmup_s": warmup,
            "lag_floor": round(lag_floor),
        },
        "stages": stages,
        "loadgen": loadgen,
        "verdicts": [{"rule": r, "ok": ok, "text": t} for r, ok, t in verdicts],
    }
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(d, "soak.svg"), "w") as f:
        f.write(plot(rows, stages, load_start, judged_from, duration, start.get("every_s") or 10, passed))

    order = ["samples", "rss", "lag", "errors", "alive", "loadgen"]
    for rule, ok, text in sorted(verdicts, key=lambda v: order.index(v[0])):
        print(f"soak: {'pass' if ok else 'FAIL'}  {rule:<7} {text}")
    for line in quotes:
        print(line)
    print(f"soak: {'PASSED' if passed else 'FAILED'} ({len(rows)} samples; files in {d}: samples.csv, "
          f"summary.json, soak.svg{', ' + os.path.basename(lg_path) if lg_path else ''})")
    return 0 if passed else 1


def fmt(v):
    return "-" if v is None else f"{v:.1f}"


# --- plot -------------------------------------------------------------------------------------

COLORS = {"gateway": "#1f77b4", "fanout": "#d62728", "sink": "#2ca02c"}
NAMES = {"gateway": "gateway", "fanout": "fanout", "sink": "history sink"}


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot(rows, stages, load_start, judged_from, duration, every, passed):
    """An SVG of RSS (MiB) and lag per stage against minutes since the load started: the warm-up
    shaded, each stage's ±10 % band around its median RSS, each lag bound dashed."""
    W, H = 960, 660
    left, right = 80, 170
    panels = [("RSS", "MiB", 60, 300), ("consumer lag", "records", 370, 610)]
    t = [(r["epoch_s"] - load_start) / 60 for r in rows]
    x_lo, x_hi = min(t[0], 0), max(t[-1], duration / 60)
    xt = [v for v in nice_ticks(x_lo, x_hi, 8) if x_lo - 1e-9 <= v <= x_hi + 1e-9]

    def X(v):
        return left + (v - x_lo) / (x_hi - x_lo) * (W - left - right)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="16">Soak: {duration / 60:g} min of '
           f'the load, each stage sampled every {every:g} s: {"passed" if passed else "FAILED"}</text>']
    for title, unit, top, bottom in panels:
        key = "rss_kib" if title == "RSS" else "lag"
        scale = 1024 if key == "rss_kib" else 1
        vals = [r[f"{s}_{key}"] / scale for r in rows for s in STAGES if r.get(f"{s}_{key}") is not None]
        extra = []
        for s in STAGES:
            if key == "rss_kib" and "rss_kib" in stages[s]:
                extra += [v / scale for v in stages[s]["rss_kib"]["band_kib"]]
            if key == "lag" and stages[s].get("lag", {}).get("bound") is not None:
                extra.append(stages[s]["lag"]["bound"])
        y_lo = 0.0
        y_hi = max(vals + extra + [1.0]) * 1.15
        yt = nice_ticks(y_lo, y_hi, 5)
        y_hi = max(y_hi, yt[-1])

        def Y(v, top=top, bottom=bottom, y_hi=y_hi):
            return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

        # warm-up and after-the-load shading
        out.append(f'<rect x="{X(max(x_lo, 0)):.1f}" y="{top}" width="{X((judged_from - load_start) / 60) - X(max(x_lo, 0)):.1f}" '
                   f'height="{bottom - top}" fill="#eeeeee"/>')
        out.append(f'<text x="{X(max(x_lo, 0)) + 4:.1f}" y="{top + 14}" fill="#777">warm-up</text>')
        if t[-1] > duration / 60:
            out.append(f'<rect x="{X(duration / 60):.1f}" y="{top}" width="{X(t[-1]) - X(duration / 60):.1f}" '
                       f'height="{bottom - top}" fill="#f6f0e0"/>')
        for v in yt:
            out.append(f'<line x1="{left}" x2="{W - right}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        for v in xt:
            out.append(f'<line x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{top}" y2="{bottom}" stroke="#eee"/>')
            out.append(f'<text x="{X(v):.1f}" y="{bottom + 16}" text-anchor="middle">{v:g}</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{W - left - right}" height="{bottom - top}" fill="none" stroke="#444"/>')
        out.append(f'<text x="{left}" y="{top - 8}" font-size="14">{esc(title)} ({esc(unit)})</text>')
        out.append(f'<text x="{(left + W - right) / 2}" y="{bottom + 32}" text-anchor="middle">'
                   f'minutes since the load started</text>')
        x_end = X(duration / 60)
        for s in STAGES:
            c = COLORS[s]
            if key == "rss_kib" and "rss_kib" in stages[s]:
                lo, hi = (v / scale for v in stages[s]["rss_kib"]["band_kib"])
                x0 = X((judged_from - load_start) / 60)
                out.append(f'<rect x="{x0:.1f}" y="{Y(hi):.1f}" width="{x_end - x0:.1f}" height="{Y(lo) - Y(hi):.1f}" '
                           f'fill="{c}" fill-opacity="0.10"/>')
            if key == "lag" and stages[s].get("lag", {}).get("bound") is not None:
                b = stages[s]["lag"]["bound"]
                out.append(f'<line x1="{left}" x2="{x_end:.1f}" y1="{Y(b):.1f}" y2="{Y(b):.1f}" stroke="{c}" '
                           f'stroke-dasharray="6 4" stroke-opacity="0.7"/>')
            pts = [(X(tt), Y(r[f"{s}_{key}"] / scale)) for tt, r in zip(t, rows) if r.get(f"{s}_{key}") is not None]
            if pts:
                out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="'
                           + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for i, s in enumerate(STAGES):
            ly = top + 20 + i * 18
            out.append(f'<line x1="{W - right + 12}" x2="{W - right + 36}" y1="{ly - 4}" y2="{ly - 4}" '
                       f'stroke="{COLORS[s]}" stroke-width="2"/>')
            out.append(f'<text x="{W - right + 42}" y="{ly}">{esc(NAMES[s])}</text>')
        note = "band: ±10 % of median" if key == "rss_kib" else "dashed: bound"
        out.append(f'<text x="{W - right + 12}" y="{top + 20 + 3 * 18 + 6}" fill="#555">{note}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
