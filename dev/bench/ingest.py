#!/usr/bin/env python3
"""End-to-end ingest benchmark: the same OTLP load against X-Ray (SQLite and
ClickHouse backends) and Arize Phoenix, on this machine, in one run.

For each target it starts the server on free ports with a fresh store, runs
`xray-loadgen send` for a fixed time, then waits until the store holds what
the endpoint acknowledged and checks it holds exactly that. It samples the
server's CPU time and peak RSS (VmHWM) from /proc and prints one table, plus
the X-Ray/Phoenix ratios. Use dev/bench/ingest.sh, which builds and installs
what this needs; run it with --help for the options.

Stdlib only. Linux only (/proc).
"""

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg):
    print(f"ingest.py: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_seconds(pid):
    """utime + stime of a process and its reaped children, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11..14] = utime stime cutime cstime (stat fields 14..17)
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def wait_http(url, timeout, proc):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop(proc, grace=20):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_loadgen(args, endpoint, protocol):
    cmd = [
        str(args.loadgen_bin), "send", "--json",
        "--endpoint", endpoint, "--protocol", protocol,
        "--concurrency", str(args.concurrency),
        "--duration", args.duration, "--mode", args.mode,
        "--batch", str(args.batch), "--seed", str(args.seed),
    ]
    if args.rate:
        cmd += ["--rate", str(args.rate)]
    if args.payload_min is not None:
        cmd += ["--payload-min", str(args.payload_min)]
    if args.payload_max is not None:
        cmd += ["--payload-max", str(args.payload_max)]
    say("$ " + " ".join(cmd))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout), " ".join(cmd[1:])


def wait_stored(count_fn, want, settle_timeout):
    """Polls count_fn() until it reaches `want` or stops growing for
    settle_timeout seconds. Returns (count, time when it was last reached)."""
    last, last_change = -1, time.time()
    while True:
        n = count_fn()
        now = time.time()
        if n != last:
            last, last_change = n, now
        if n >= want:
            return n, now
        if now - last_change > settle_timeout:
            return n, last_change
        time.sleep(0.5)


# --- X-Ray ----------------------------------------------------------------------

def bench_xray(args, backend, ch_url=None):
    work = Path(tempfile.mkdtemp(prefix=f"xray-bench-{backend}-"))
    grpc, http, api = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "XRAY_RECEIVERS__OTLP__GRPC_ADDR": f"127.0.0.1:{grpc}",
        "XRAY_RECEIVERS__OTLP__HTTP_ADDR": f"127.0.0.1:{http}",
        "XRAY_API__ADDR": f"127.0.0.1:{api}",
        "XRAY_STORAGE__BACKEND": backend,
        "XRAY_LOG__LEVEL": "warn",
    })
    if backend == "sqlite":
        env["XRAY_STORAGE__SQLITE__PATH"] = str(work / "xray.db")
    else:
        env["XRAY_STORAGE__CLICKHOUSE__URL"] = ch_url
        env["XRAY_STORAGE__CLICKHOUSE__DATABASE"] = f"bench_{int(time.time())}_{os.getpid()}"
    log = open(work / "xray.log", "w")
    cmd = [str(args.xray_bin), "serve"]
    say(f"starting X-Ray ({backend}) in {work}")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=work)
    try:
        wait_http(f"http://127.0.0.1:{api}/readyz", 120, proc)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.time()
        endpoint = f"http://127.0.0.1:{grpc if args.protocol == 'grpc' else http}"
        report, command = run_loadgen(args, endpoint, args.protocol)

        def counted():
            out = subprocess.run(
                [str(args.loadgen_bin), "count", "--json"],
                env=env, cwd=work, check=True, capture_output=True, text=True,
            )
            return json.loads(out.stdout)

        def count():
            c = counted()
            return c["executions"] + c["steps"]

        metrics_url = f"http://127.0.0.1:{api}/metrics"

        def written():
            # Progress from the collector's own counter: paging through the
            # store every half second (`loadgen count`) would compete with
            # the writer for the same two cores and slow what it measures.
            # The exact count is taken from the store once this says done.
            with urllib.request.urlopen(metrics_url, timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("xray_collector_rows_written_total"):
                        return int(float(line.split()[-1]))
            return 0

        # rows stored = executions + steps, whether steps came as child spans
        # or as snapshot events
        want = report["acknowledged_executions"] + report["acknowledged_steps"]
        _, t_done = wait_stored(written, want, args.settle)
        cpu = cpu_seconds(proc.pid) - cpu0
        # The counter can run ahead of the store only by rows written twice
        # (a retried batch); confirm with the store itself. Paging through
        # the store takes seconds at this size, so that time counts only
        # when the first count still falls short.
        final = counted()
        if final["executions"] + final["steps"] < want:
            _, t_done = wait_stored(count, want, args.settle)
            cpu = cpu_seconds(proc.pid) - cpu0
            final = counted()
        rss = peak_rss_mb(proc.pid)
        elapsed = t_done - t0
        return {
            "target": f"xray-{backend}",
            "report": report,
            "command": command,
            "stored_executions": final["executions"],
            "stored_spans": final["executions"] + final["steps"]
            if args.mode == "spans" else final["executions"],
            "stored_steps": final["steps"],
            "ingest_secs": elapsed,
            "cpu_secs": cpu,
            "peak_rss_mb": rss,
            "load_average": load_average(),
        }
    finally:
        stop(proc)
        log.close()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)])


# --- Phoenix --------------------------------------------------------------------

def bench_phoenix(args):
    work = Path(tempfile.mkdtemp(prefix="phoenix-bench-"))
    port, grpc = free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    })
    log = open(work / "phoenix.log", "w")
    phoenix = Path(args.phoenix_venv) / "bin" / "phoenix"
    say(f"starting Phoenix in {work}")
    proc = subprocess.Popen([str(phoenix), "serve"], env=env, stdout=log, stderr=log, cwd=work)
    try:
        wait_http(f"http://127.0.0.1:{port}/", 300, proc)
        db = work / "phoenix.db"
        deadline = time.time() + 60
        while not db.exists() and time.time() < deadline:
            time.sleep(0.5)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.time()
        endpoint = (
            f"http://127.0.0.1:{grpc}" if args.protocol == "grpc"
            else f"http://127.0.0.1:{port}/v1/traces"
        )
        report, command = run_loadgen(args, endpoint, args.protocol)

        def count():
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
            try:
                return con.execute("SELECT count(*) FROM spans").fetchone()[0]
            except sqlite3.OperationalError:
                return 0
            finally:
                con.close()

        want = report["acknowledged_spans"]
        stored, t_done = wait_stored(count, want, args.settle)
        cpu = cpu_seconds(proc.pid) - cpu0
        rss = peak_rss_mb(proc.pid)
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        traces = con.execute("SELECT count(*) FROM traces").fetchone()[0]
        con.close()
        return {
            "target": "phoenix",
            "report": report,
            "command": command,
            "stored_executions": traces,
            "stored_spans": stored,
            "stored_steps": stored - traces,
            "ingest_secs": t_done - t0,
            "cpu_secs": cpu,
            "peak_rss_mb": rss,
            "load_average": load_average(),
        }
    finally:
        stop(proc)
        log.close()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)])


# --- table ----------------------------------------------------------------------

def row(r, mode):
    rep = r["report"]
    want_spans = rep["acknowledged_spans"]
    if r["target"] == "phoenix":
        exact = r["stored_spans"] == want_spans
    else:
        exact = (r["stored_executions"] == rep["acknowledged_executions"]
                 and r["stored_steps"] == rep["acknowledged_steps"])
    sustained = r["stored_spans"] / r["ingest_secs"] if r["ingest_secs"] > 0 else 0
    return {
        "target": r["target"],
        "acked_spans": want_spans,
        "stored_spans": r["stored_spans"],
        "exact": "yes" if exact else "NO",
        "sustained_spans_s": sustained,
        "accept_spans_s": rep["spans_per_sec"],
        "p50_ms": rep["p50_ms"],
        "p99_ms": rep["p99_ms"],
        "errors": sum(rep["errors"].values()),
        "cpu_cores": r["cpu_secs"] / r["ingest_secs"] if r["ingest_secs"] > 0 else 0,
        "peak_rss_mb": r["peak_rss_mb"],
        "load": " ".join(f"{x:.1f}" for x in r["load_average"]),
    }


def print_table(rows, out):
    cols = [
        ("target", "target", "{}"),
        ("acked_spans", "acked spans", "{}"),
        ("stored_spans", "stored spans", "{}"),
        ("exact", "exact", "{}"),
        ("sustained_spans_s", "sustained spans/s", "{:.0f}"),
        ("accept_spans_s", "accepted spans/s", "{:.0f}"),
        ("p50_ms", "p50 ms", "{:.1f}"),
        ("p99_ms", "p99 ms", "{:.1f}"),
        ("errors", "errors", "{}"),
        ("cpu_cores", "server CPU (cores)", "{:.2f}"),
        ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
        ("load", "load avg (1/5/15)", "{}"),
    ]
    print("| " + " | ".join(c[1] for c in cols) + " |", file=out)
    print("|" + "|".join("---" for _ in cols) + "|", file=out)
    for r in rows:
        print("| " + " | ".join(fmt.format(r[k]) if r[k] is not None else "-" for k, _, fmt in cols) + " |", file=out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="sqlite,clickhouse,phoenix",
                   help="comma-separated: sqlite, clickhouse, phoenix")
    p.add_argument("--duration", default="30s")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rate", type=float, default=None, help="executions/s (default unlimited)")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"])
    p.add_argument("--mode", default="spans", choices=["spans", "snapshot"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--payload-min", type=int, default=None,
                   help="smallest LLM prompt/output text in bytes (default: the load generator's)")
    p.add_argument("--payload-max", type=int, default=None,
                   help="largest LLM prompt/output text in bytes (default: the load generator's)")
    p.add_argument("--settle", type=float, default=120,
                   help="give up waiting for the store when its count has not moved for this many seconds")
    p.add_argument("--xray-bin", default=str(ROOT / "target/release/xray"))
    p.add_argument("--loadgen-bin", default=str(ROOT / "target/release/xray-loadgen"))
    p.add_argument("--phoenix-venv", default=str(ROOT / "dev/bench/.venv-phoenix"))
    p.add_argument("--clickhouse-url", default=os.environ.get("XRAY_TEST_CLICKHOUSE_URL"))
    p.add_argument("--json-out", default=None, help="also write every result as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the servers' data directories")
    args = p.parse_args()

    results = []
    for t in [t.strip() for t in args.targets.split(",") if t.strip()]:
        if t == "sqlite":
            results.append(bench_xray(args, "sqlite"))
        elif t == "clickhouse":
            if not args.clickhouse_url:
                raise SystemExit("ingest.py: clickhouse needs --clickhouse-url (ingest.sh starts the dev server)")
            results.append(bench_xray(args, "clickhouse", args.clickhouse_url))
        elif t == "phoenix":
            results.append(bench_phoenix(args))
        else:
            raise SystemExit(f"ingest.py: unknown target {t}")
        say(f"{t}: done, load average now {load_average()}")

    rows = [row(r, args.mode) for r in results]
    print(f"\ningest benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs; load: {args.protocol}, {args.mode} mode, "
          f"{args.concurrency} connections, {args.duration}, batch {args.batch}, "
          f"rate {args.rate or 'unlimited'}, LLM payloads "
          f"{args.payload_min or 'default'}-{args.payload_max or 'default'} bytes\n")
    print_table(rows, sys.stdout)
    phoenix = next((r for r in rows if r["target"] == "phoenix"), None)
    if phoenix:
        print()
        for r in rows:
            if r["target"] == "phoenix":
                continue
            ratio = lambda a, b: f"{a / b:.1f}x" if b else "n/a"
            print(f"{r['target']} / phoenix: sustained ingest "
                  f"{ratio(r['sustained_spans_s'], phoenix['sustained_spans_s'])}, "
                  f"p99 export latency {ratio(r['p99_ms'], phoenix['p99_ms'])}, "
                  f"peak RSS {ratio(r['peak_rss_mb'] or 0, phoenix['peak_rss_mb'] or 0)}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    bad = [r["target"] for r in rows if r["exact"] != "yes"]
    if bad:
        say(f"stored counts differ from acknowledged counts for: {', '.join(bad)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
