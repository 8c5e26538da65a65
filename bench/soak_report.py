#!/usr/bin/env python3
"""The figures and verdicts of a bench/soak.sh run, from the files it left.

  soak_report.py DIR

DIR holds requests.csv and lag.csv (bench/soak_load.py), rss.csv,
phases.tsv (name, start, end in Unix seconds), upstream.json (the fake
GitHub's /__requests), meta.json ({"tokens": [...], "warmup_end": t,
"names": [...]}). Prints the report; exit status 0 when every soak target is
met, 3 when one is missed.

The targets (issue 14, item 7):
  1. no failed client request for a key with a cached entry;
  2. none of those requests slower than 1.2 s;
  3. each instance's RSS within 10% (max over min) after the warm-up;
  4. no upstream request while the rate-limit gate is closed.
"""

import csv
import json
import sys
from collections import Counter, defaultdict

SLOW_MS = 1200.0
RSS_SPREAD_PCT = 10.0
# A request the instance sent before the rate-limited answer reached it can
# arrive just after that answer left the fake; those are listed, not counted.
RACE_GRACE_MS = 100.0


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100.0 * len(values)))]


def fmt_ms(v):
    return "-" if v != v else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def load(dirname):
    with open(f"{dirname}/requests.csv") as f:
        reqs = list(csv.DictReader(f))
    for r in reqs:
        r["start"] = float(r["start"])
        r["latency_ms"] = float(r["latency_ms"])
        r["instance"] = int(r["instance"])
    phases = []
    with open(f"{dirname}/phases.tsv") as f:
        for line in f:
            name, start, end = line.split()
            phases.append((name, float(start), float(end)))
    with open(f"{dirname}/upstream.json") as f:
        upstream = json.load(f)
    with open(f"{dirname}/meta.json") as f:
        meta = json.load(f)
    rss = []
    with open(f"{dirname}/rss.csv") as f:
        for row in csv.reader(f):
            if row[0] == "t":
                continue
            rss.append([float(row[0])] + [int(v) for v in row[1:]])
    lag = []
    with open(f"{dirname}/lag.csv") as f:
        for row in csv.DictReader(f):
            lag.append((float(row["t"]), float(row["lag_ms"])))
    return reqs, phases, upstream, meta, rss, lag


def phase_of(phases, t):
    for name, start, end in phases:
        if start <= t < end:
            return name
    # The load starts a moment before the first phase and may end after the last.
    return phases[-1][0] if t >= phases[-1][2] else phases[0][0]


def instance_of(request, tokens):
    auth = request["headers"].get("authorization", "")
    for i, token in enumerate(tokens):
        if token in auth:
            return i
    return -1


def gate_windows(upstream, tokens):
    """Per instance: (answered_at_ms, closed_until_ms, why) for every
    rate-limited answer it got, as chimney must read them (CONTRACT 3.7)."""
    windows = defaultdict(list)
    for r in upstream:
        h = r.get("answer_headers", {})
        status = r.get("status")
        limited = status == 429 or h.get("x-ratelimit-remaining") == "0" or (
            status == 403 and "retry-after" in h)
        if not limited:
            continue
        at = r["at_ms"]
        if "retry-after" in h:
            until, why = at + 1000 * int(h["retry-after"]), f"{status} Retry-After {h['retry-after']}"
        elif "x-ratelimit-reset" in h:
            until, why = 1000 * int(h["x-ratelimit-reset"]), f"{status} remaining 0, reset"
        else:
            until, why = at + 60_000, f"{status} (60 s default)"
        windows[instance_of(r, tokens)].append((at, until, why))
    return windows


def main(dirname):
    reqs, phases, upstream, meta, rss, lag = load(dirname)
    names = meta["names"]
    warmup_end = meta["warmup_end"]
    out = []
    p = out.append

    # --- client requests ---------------------------------------------------------------
    p("== client requests (latency from connect to last byte; client timeout 10 s)")
    p(f"{'phase':<18}{'reqs':>7}{'fail':>6}{'cold':>6}{'cold fail':>10}{'cold 503':>9}"
      f"{'p50':>7}{'p99':>7}{'max':>7}{'>1.2s':>6}  X-Cache of cached keys")
    by_phase = defaultdict(list)
    for r in reqs:
        by_phase[phase_of(phases, r["start"])].append(r)
    order = [n for n, _, _ in phases]
    for name in ([n for n in by_phase if n not in order] + order + ["ALL"]):
        rows = reqs if name == "ALL" else by_phase.get(name, [])
        if not rows:
            continue
        cached = [r for r in rows if r["kind"] == "cached"]
        cold = [r for r in rows if r["kind"] == "cold"]
        lat = [r["latency_ms"] for r in cached]
        xc = Counter(r["x_cache"] for r in cached if r["x_cache"])
        p(f"{name:<18}{len(rows):>7}{sum(r['outcome'] == 'fail' for r in cached):>6}{len(cold):>6}"
          f"{sum(r['outcome'] == 'fail' for r in cold):>10}{sum(r['outcome'] == 'cold-503' for r in cold):>9}"
          f"{fmt_ms(pct(lat, 50)):>7}{fmt_ms(pct(lat, 99)):>7}{fmt_ms(max(lat, default=float('nan'))):>7}"
          f"{sum(v > SLOW_MS for v in lat):>6}  "
          + " ".join(f"{k}:{v}" for k, v in sorted(xc.items())))
    cached_all = [r for r in reqs if r["kind"] == "cached"]
    failed = [r for r in cached_all if r["outcome"] == "fail"]
    slow = [r for r in cached_all if r["latency_ms"] > SLOW_MS]
    cold_all = [r for r in reqs if r["kind"] == "cold"]
    lat_all = [r["latency_ms"] for r in cached_all]

    def describe(r):
        what = r["error"] or f"{r['status']} {r['problem']}".strip()
        return (f"  +{r['start'] - phases[0][1]:6.1f}s {phase_of(phases, r['start']):<16} "
                f"{names[r['instance']]} {r['method']} {r['path']} -> {what} "
                f"X-Cache {r['x_cache'] or '-'} {r['latency_ms']:.0f} ms")

    if failed:
        p(f"\nfailed requests for cached keys, by path and answer ({len(failed)}):")
        for (path, what), n in Counter(
                (r["method"] + " " + r["path"], r["error"] or f"{r['status']} {r['problem']}".strip())
                for r in failed).most_common(12):
            p(f"  {n:5} {path} -> {what}")
        p("  first and last: ")
        p(describe(failed[0]))
        p(describe(failed[-1]))
    if slow:
        p(f"\nrequests for cached keys slower than 1.2 s, by phase and path ({len(slow)}):")
        for (ph, path), n in Counter((phase_of(phases, r["start"]), r["method"] + " " + r["path"])
                                     for r in slow).most_common(12):
            p(f"  {n:5} {ph:<16} {path}")
        p("  the slowest:")
        for r in sorted(slow, key=lambda r: -r["latency_ms"])[:3]:
            p(describe(r))
    cold_fail = Counter(r["error"] or f"{r['status']} {r['problem']}".strip()
                        for r in cold_all if r["outcome"] != "ok")
    if cold_fail:
        p("\ncold keys not answered 2xx: " + ", ".join(f"{k} x{v}" for k, v in cold_fail.most_common()))
    worst_lag = max((l for _, l in lag), default=0.0)
    p(f"\nload generator loop lag: max {worst_lag:.0f} ms, p99 {pct([l for _, l in lag], 99):.0f} ms "
      "(how late the client itself woke up; a large value means CPU starvation on the machine)")

    # --- upstream ------------------------------------------------------------------------
    tokens = meta["tokens"]
    p("\n== upstream requests (as the fake GitHub received them)")
    per = defaultdict(Counter)
    statuses = Counter()
    for r in upstream:
        per[phase_of(phases, r["at_ms"] / 1000)][instance_of(r, tokens)] += 1
        statuses[r.get("status")] += 1
    p(f"{'phase':<18}" + "".join(f"{n:>8}" for n in names))
    for name in order:
        p(f"{name:<18}" + "".join(f"{per[name][i]:>8}" for i in range(len(names))))
    p(f"total {len(upstream)}; answered " + ", ".join(f"{k}: {v}" for k, v in sorted(
        statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))))
    windows = gate_windows(upstream, tokens)
    violations, raced = [], []
    for r in upstream:
        i = instance_of(r, tokens)
        for at, until, why in windows.get(i, []):
            if at < r["at_ms"] < until:
                (raced if r["at_ms"] - at <= RACE_GRACE_MS else violations).append((r, at, until, why))
                break
    p(f"rate-limited answers: " + ", ".join(f"{names[i]} {len(w)}" for i, w in sorted(windows.items())))
    p(f"upstream requests while the gate was closed: {len(violations)}"
      f" (plus {len(raced)} within {RACE_GRACE_MS:.0f} ms of the limit answer: in flight before it arrived)")
    for r, at, until, why in violations[:8]:
        p(f"  {names[instance_of(r, tokens)]} {r['path']} at +{(r['at_ms'] - at) / 1000:.2f}s "
          f"after a {why} closing for {(until - at) / 1000:.0f}s -> {r.get('status')}")

    # --- RSS -----------------------------------------------------------------------------
    p("\n== RSS (MiB) every ~10 s; after warm-up from " f"+{warmup_end - phases[0][1]:.0f}s")
    spread = []
    if rss:
        start = phases[0][1]
        line, last = [], -1e9
        for row in rss:
            if row[0] - last >= 10:
                line.append(f"+{row[0] - start:.0f}s " + "/".join(f"{v / 1024:.1f}" for v in row[1:]))
                last = row[0]
        for k in range(0, len(line), 6):
            p("  " + "  ".join(line[k:k + 6]))
        for i, n in enumerate(names):
            after = [row[1 + i] for row in rss if row[0] >= warmup_end and row[1 + i] > 0]
            if after:
                s = (max(after) - min(after)) / min(after) * 100
                spread.append(s)
                # Growth, as apart from the spread: the median of the last quarter of the
                # samples against that of the first (a leak grows; allocator noise does not).
                q = max(1, len(after) // 4)
                first_q, last_q = pct(after[:q], 50), pct(after[-q:], 50)
                p(f"  {n}: after warm-up min {min(after) / 1024:.1f} MiB, max {max(after) / 1024:.1f} MiB,"
                  f" spread {s:.1f}%; median of the first quarter {first_q / 1024:.1f} MiB, of the last"
                  f" {last_q / 1024:.1f} MiB (growth {(last_q - first_q) / first_q * 100:+.1f}%)")

    # --- verdicts ------------------------------------------------------------------------
    targets = [
        ("0 failed requests for keys with a cached entry", not failed, f"{len(failed)} failed of {len(cached_all)}"),
        ("none slower than 1.2 s", not slow,
         f"{len(slow)} slower; p99 {fmt_ms(pct(lat_all, 99))} ms, max {fmt_ms(max(lat_all, default=float('nan')))} ms"),
        ("RSS flat within 10% after warm-up", bool(spread) and max(spread) <= RSS_SPREAD_PCT,
         "spread " + ", ".join(f"{s:.1f}%" for s in spread)),
        ("no upstream request while the gate is closed", not violations and bool(windows),
         f"{len(violations)} while closed, {sum(map(len, windows.values()))} limit answers seen"),
    ]
    p("\n== soak targets")
    for name, ok, detail in targets:
        p(f"  {'PASS' if ok else 'MISS'}  {name}: {detail}")
    print("\n".join(out))
    return 0 if all(ok for _, ok, _ in targets) else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
