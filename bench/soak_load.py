#!/usr/bin/env python3
"""Dashboard-like load for bench/soak.sh: stdlib asyncio only, no venv.

Virtual dashboards refresh every card about once a second (the page's own
requests, see docs/dashboard.js) against two chimney instances, a trickle of
never-seen keys ("cold": nothing cached for them) goes alongside, and other
clients hang up mid-request at a steady rate. Every request is logged with
its start time, latency, status, X-Cache and a failure class; the RSS of the
chimney processes and this loop's own scheduling lag are sampled too, so a
slow request can be told apart from a starved client.

Subcommands:
  warm  --bases A,B                 GET every dashboard key on each instance until it answers 2xx
  run   --bases A,B --duration S    the load; writes --out (CSV), --rss and --lag
"""

import argparse
import asyncio
import csv
import json
import random
import sys
import time

# The dashboard's requests (docs/dashboard.js) and the keys behind its cards.
# Every one has a cached entry once `warm` has run (or needs no cache).
DASHBOARD = [
    ("GET", "/api/pipeline/summary"),
    ("GET", "/api/deploy/status"),
    ("GET", "/healthz"),
    ("GET", "/api/version"),
    ("GET", "/api/cache/stats"),
    ("GET", "/api/metrics"),
    ("HEAD", "/api/github/pulls?state=open&per_page=100"),
    ("GET", "/api/github/pulls?state=open&per_page=100"),
    ("GET", "/api/github/issues?state=open&per_page=100"),
    ("GET", "/api/github/actions/runs?per_page=20"),
    ("GET", "/api/github/org/repos"),
]
# Keys read through the proxy's cache (the others are chimney's own pages).
PROXIED = {p for _, p in DASHBOARD if p.startswith("/api/github/") and p != "/api/github/org/repos"}
CLIENT_TIMEOUT_S = 10.0  # the dashboard's FETCH_TIMEOUT_MS


class Answer:
    __slots__ = ("status", "headers", "body", "error")

    def __init__(self, status=0, headers=None, body=b"", error=""):
        self.status, self.headers, self.body, self.error = status, headers or {}, body, error


def split_base(base):
    host, port = base.removeprefix("http://").rstrip("/").split(":")
    return host, int(port)


async def http(base, method, target, timeout=CLIENT_TIMEOUT_S):
    """One request on a fresh connection (`Connection: close`), read to the end."""
    host, port = split_base(base)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Accept: application/json\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            raw = await reader.read(-1)
    except TimeoutError:
        return Answer(error="timeout")
    except OSError as e:
        return Answer(error=f"connection: {e.__class__.__name__}")
    finally:
        if writer is not None:
            writer.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return Answer(error="no complete answer head")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Answer(error="bad status line")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if method != "HEAD" and status not in (204, 304):
        if "content-length" in headers:
            if len(body) != int(headers["content-length"]):
                return Answer(status, headers, body, "truncated body")
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            if not body.endswith(b"0\r\n\r\n"):
                return Answer(status, headers, body, "truncated chunked body")
    return Answer(status, headers, body)


def problem_type(answer):
    if not answer.headers.get("content-type", "").startswith("application/problem+json"):
        return ""
    try:
        return json.loads(answer.body).get("type", "").rsplit("/", 1)[-1]
    except (ValueError, AttributeError):
        return "unreadable"


def classify(kind, answer):
    """ok | fail | cold-503 (a documented refusal for a key with nothing cached)."""
    if answer.error:
        return "fail"
    if 200 <= answer.status < 300 or answer.status == 304:
        return "ok"
    if kind == "cold" and answer.status == 503 and problem_type(answer) in (
        "upstream-rate-limited",
        "rate-limit-reserve",
        "upstream-busy",
    ):
        return "cold-503"
    return "fail"


class Recorder:
    FIELDS = ["start", "latency_ms", "instance", "method", "path", "kind", "status",
              "x_cache", "outcome", "problem", "error"]

    def __init__(self, path):
        self.file = open(path, "w", newline="")
        self.csv = csv.writer(self.file)
        self.csv.writerow(self.FIELDS)

    def row(self, *values):
        self.csv.writerow(values)

    def close(self):
        self.file.close()


async def timed(rec, bases, inst, method, path, kind):
    start = time.time()
    t0 = time.perf_counter()
    answer = await http(bases[inst], method, path)
    latency_ms = (time.perf_counter() - t0) * 1000
    rec.row(f"{start:.3f}", f"{latency_ms:.2f}", inst, method, path, kind, answer.status,
            answer.headers.get("x-cache", ""), classify(kind, answer), problem_type(answer),
            answer.error)


async def dashboard(rec, bases, n, stop, rng):
    """One open dashboard: every card at once, then a pause of about a second.
    Sticks to one instance, as a load balancer with affinity would, but
    moves now and then."""
    inst = n % len(bases)
    await asyncio.sleep(rng.random())
    while time.time() < stop:
        if rng.random() < 0.1:
            inst = rng.randrange(len(bases))
        await asyncio.gather(*(timed(rec, bases, inst, m, p, "cached") for m, p in DASHBOARD))
        await asyncio.sleep(0.7 + 0.6 * rng.random())


async def cold_keys(rec, bases, stop, pool, rng):
    """Keys never asked for before, each once, spread evenly over the run:
    a bounded pool, so the cache (and RSS) does not grow with the run."""
    begin = time.time()
    gap = max(0.05, (stop - begin) / pool)
    for page in range(1000, 1000 + pool):
        if time.time() >= stop:
            break
        inst = rng.randrange(len(bases))
        asyncio.ensure_future(
            timed(rec, bases, inst, "GET", f"/api/github/pulls?state=all&per_page=5&page={page}", "cold")
        )
        await asyncio.sleep(gap)


async def hang_up(base, method, path, mode, wait_s):
    """A client that goes away mid-request."""
    host, port = split_base(base)
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(host, port)
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
            if mode == "half-head":
                writer.write(head.encode())  # the head never ends
            else:
                writer.write((head + "\r\n").encode())
            await writer.drain()
            if mode == "after-wait":
                try:
                    async with asyncio.timeout(wait_s):
                        await reader.read(1)
                except TimeoutError:
                    pass
            writer.transport.abort()  # RST, as a closed tab does
    except (OSError, TimeoutError):
        pass


async def disconnects(bases, stop, rate, rng, counts):
    keys = [(m, p) for m, p in DASHBOARD]
    while time.time() < stop:
        await asyncio.sleep(rng.expovariate(rate))
        mode = rng.choice(["at-once", "half-head", "after-wait"])
        method, path = rng.choice(keys)
        counts[mode] = counts.get(mode, 0) + 1
        asyncio.ensure_future(hang_up(bases[rng.randrange(len(bases))], method, path, mode,
                                      rng.uniform(0.001, 1.5)))


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


async def sample_rss(path, pids, stop, every):
    with open(path, "w") as f:
        f.write("t," + ",".join(f"rss_kb_{i}" for i in range(len(pids))) + "\n")
        while time.time() < stop:
            f.write(f"{time.time():.3f}," + ",".join(str(rss_kb(p)) for p in pids) + "\n")
            f.flush()
            await asyncio.sleep(every)


async def sample_lag(path, stop):
    """How late this event loop wakes up: a slow request while the client
    itself was starved of CPU is the machine's, not chimney's."""
    with open(path, "w") as f:
        f.write("t,lag_ms\n")
        while time.time() < stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.05)
            lag = (time.perf_counter() - t0 - 0.05) * 1000
            f.write(f"{time.time():.3f},{lag:.1f}\n")


async def run(args):
    bases = args.bases.split(",")
    pids = [int(p) for p in args.pids.split(",")] if args.pids else []
    rng = random.Random(args.seed)
    stop = time.time() + args.duration
    rec = Recorder(args.out)
    counts = {}
    tasks = [dashboard(rec, bases, n, stop, random.Random(rng.random())) for n in range(args.dashboards)]
    tasks.append(cold_keys(rec, bases, stop, args.cold_pool, random.Random(rng.random())))
    tasks.append(disconnects(bases, stop, args.disconnect_rate, random.Random(rng.random()), counts))
    tasks.append(sample_lag(args.lag, stop))
    if pids:
        tasks.append(sample_rss(args.rss, pids, stop, args.rss_every))
    await asyncio.gather(*tasks)
    # Requests still out finish within the client timeout.
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if pending:
        await asyncio.wait(pending, timeout=CLIENT_TIMEOUT_S + 6)
    rec.close()
    print(json.dumps({"disconnects": counts}))


async def warm(args):
    bases = args.bases.split(",")
    deadline = time.time() + args.timeout
    for inst, base in enumerate(bases):
        for method, path in DASHBOARD:
            while True:
                answer = await http(base, method, path, timeout=5)
                if not answer.error and 200 <= answer.status < 300:
                    break
                if time.time() > deadline:
                    sys.exit(f"warm-up: {base}{path} answers {answer.status} {answer.error}")
                await asyncio.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("warm")
    w.add_argument("--bases", required=True)
    w.add_argument("--timeout", type=float, default=30)
    r = sub.add_parser("run")
    r.add_argument("--bases", required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--dashboards", type=int, default=12)
    r.add_argument("--cold-pool", type=int, default=200)
    r.add_argument("--disconnect-rate", type=float, default=3.0, help="hang-ups per second")
    r.add_argument("--pids", default="")
    r.add_argument("--rss-every", type=float, default=2.0)
    r.add_argument("--out", required=True)
    r.add_argument("--rss", default="/dev/null")
    r.add_argument("--lag", default="/dev/null")
    r.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    asyncio.run(warm(args) if args.cmd == "warm" else run(args))


if __name__ == "__main__":
    main()
