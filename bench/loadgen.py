"""The webhook measure's load generators: ``wrk`` (Debian package, installed when missing) or a Python one.

:func:`ensure_wrk` returns the ``wrk`` binary, installing the Debian package with
``apt-get -y -q install wrk`` when it is missing and the bench runs as root; ``None`` otherwise (then
:func:`python_load` is used: threads with keep-alive connections, the same requests).
Both take the same request file (lines of ``path<TAB>timestamp<TAB>signature<TAB>body``).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

LUA = Path(__file__).with_name("callbacks.lua")


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_WRK"):
        return None if os.environ.get("BENCH_NO_WRK") else found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    print("  installing wrk (apt-get -y -q install wrk)", flush=True)
    done = subprocess.run(["apt-get", "-y", "-q", "install", "wrk"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if done.returncode != 0:
        subprocess.run(["apt-get", "-q", "update"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "-y", "-q", "install", "wrk"], capture_output=True, timeout=300,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("wrk")


def wrk_load(wrk: str, url: str, request_file: Path, *, seconds: float, threads: int = 2,
             connections: int = 16) -> dict:
    done = subprocess.run([wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency",
                           "-s", str(LUA), url, "--", str(request_file), str(threads)],
                          capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", out, re.M)
    if not rps:
        raise RuntimeError(f"wrk gave no figures: {out[-500:]} {done.stderr[-500:]}")
    return {"tool": "wrk", "requests_per_s": float(rps.group(1)), "requests": int(total.group(1)) if total else 0,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1).strip() if errors
            else "", "latency_p50_ms": _ms(p50), "latency_p99_ms": _ms(p99),
            "threads": threads, "connections": connections}


def _ms(match) -> float | None:
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def python_load(url: str, request_file: Path, *, seconds: float, connections: int = 16) -> dict:
    """``connections`` threads, each with one keep-alive connection, POSTing its share in turn."""
    lines = [line.split("\t", 3) for line in request_file.read_text().splitlines() if line]
    host, port = url.removeprefix("http://").split(":")
    counts = {"ok": 0, "bad": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(k: int):
        mine = lines[k::connections] or lines
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        i, ok, bad, err = 0, 0, 0, 0
        while time.monotonic() < stop_at:
            path, ts, sig, body = mine[i % len(mine)]
            i += 1
            headers = {"Content-Type": "application/json"}
            if ts:
                headers.update({"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sig})
            try:
                conn.request("POST", path, body=body.encode(), headers=headers)
                response = conn.getresponse()
                response.read()
                if 200 <= response.status < 400:
                    ok += 1
                else:
                    bad += 1
            except (OSError, http.client.HTTPException):
                err += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.close()
        with lock:
            counts["ok"] += ok
            counts["bad"] += bad
            counts["errors"] += err

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    total = counts["ok"] + counts["bad"]
    return {"tool": "python", "requests_per_s": total / elapsed, "requests": total, "non_2xx": counts["bad"],
            "socket_errors": str(counts["errors"]), "connections": connections}
