"""Synthesis throughput: alfa's OpenAI-compatible call path against a loopback endpoint with a fixed
latency, side by side with the practical limit (a minimal asyncio keep-alive client), the openai SDK
and distilabel 1.5, all in one run, at concurrency 1, 16, 64, 256.

    make bench            # or: .venv/bin/python bench/bench_synthesis.py [--latency-ms 50]

Each client runs in its own process against the same server process. Reported: requests/s, ratio to
the ideal (concurrency / latency) and ratio to the practical limit measured in the same run.
distilabel runs from its own virtualenv (.venv-distilabel, made by `make bench`); without it, its
column says so.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PY = {
    "minimal": sys.executable,
    "alfa": sys.executable,
    "openai_sdk": sys.executable,
    "distilabel": str(ROOT / ".venv-distilabel" / "bin" / "python"),
}


def start_server(latency_ms: float):
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "latency_server.py"),
            "--latency-ms",
            str(latency_ms),
            "--port-file",
            str(port_file),
        ]
    )
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            return proc, f"http://127.0.0.1:{port_file.read_text()}/v1"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the latency server did not start")


def run_client(name: str, url: str, n: int, c: int) -> float | None:
    py = CLIENT_PY[name]
    if not Path(py).exists():
        return None
    out = subprocess.run(
        [py, str(ROOT / "bench" / "clients.py"), name, url, str(n), str(c)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        print(
            f"  {name} c={c} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}",
            file=sys.stderr,
        )
        return None
    return n / json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency-ms", type=float, default=50)
    p.add_argument("--concurrency", default="1,16,64,256")
    p.add_argument("--seconds", type=float, default=3.0, help="target duration of each measurement")
    args = p.parse_args()
    latency = args.latency_ms / 1000
    server, url = start_server(args.latency_ms)
    rows = []
    try:
        for c in (int(x) for x in args.concurrency.split(",")):
            ideal = c / latency
            n = max(40, int(min(ideal, 1200) * args.seconds))
            rates = {name: run_client(name, url, n, c) for name in ("minimal", "alfa", "openai_sdk", "distilabel")}
            rows.append((c, n, ideal, rates))
            print(
                f"c={c:>3} n={n:>5}: " + ", ".join(f"{k} {v:.0f}/s" if v else f"{k} -" for k, v in rates.items()),
                flush=True,
            )
    finally:
        server.kill()

    def fmt(v, base):
        return f"{v:,.0f} ({v / base:.2f})" if v and base else "-"

    print(
        f"\n### Synthesis throughput, {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{args.latency_ms:.0f} ms latency (loopback)\n"
    )
    print(
        "| concurrency | ideal req/s | practical limit req/s (of ideal) | alfa req/s (of limit) | "
        "openai SDK (of limit) | distilabel 1.5.3 (of limit) | alfa / best baseline |"
    )
    print("|---|---|---|---|---|---|---|")
    for c, n, ideal, r in rows:
        best = max([v for k, v in r.items() if k in ("openai_sdk", "distilabel") and v] or [0])
        print(
            f"| {c} | {ideal:,.0f} | {fmt(r['minimal'], ideal)} | {fmt(r['alfa'], r['minimal'])} | "
            f"{fmt(r['openai_sdk'], r['minimal'])} | {fmt(r['distilabel'], r['minimal'])} | "
            f"{(r['alfa'] / best) if best and r['alfa'] else float('nan'):.2f} |"
        )
    target = next((r for c, n, i, r in rows if c == 64), None)
    if target and target["alfa"] and target["minimal"]:
        share = target["alfa"] / target["minimal"]
        best = max([v for k, v in target.items() if k in ("openai_sdk", "distilabel") and v] or [0])
        print(
            f"\nc=64: alfa reaches {share:.0%} of the practical limit (target >= 90%) and "
            f"{target['alfa'] / best if best else float('nan'):.2f}x the best baseline (target >= 1)."
        )


if __name__ == "__main__":
    main()
