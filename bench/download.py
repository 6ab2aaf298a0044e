"""Measure ``download``: ``kie.download``'s speed at real image sizes, and its memory while streaming a large file.

Real images: the simulator with its realistic pictures (about 1024 px on the long side, PNG of
1-2 MB, drawn from the prompt) makes ``IMAGES`` tasks; their result URLs are downloaded by
``worker.results.fetching.download_result`` (the body of ``kie.download``: streamed, size-capped,
type-checked, hashed, written atomically) in a fresh process, MB/s over the batch.  Baseline: the
same URLs with ``requests.get(url).content`` written to a file and hashed.  Large file: a 48 MB
PNG (4000 x 4000 noise, uncompressed) served by ``python -m http.server``, downloaded once each way;
the figure is the growth of the process's peak RSS during the download: streaming keeps it flat,
reading the body whole grows it by the file's size.  The images are rendered by the simulator on
first request; a warm-up fetch of every URL happens before the timed runs.  Full: 24 images;
quick: 8.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from . import support
from .report import Row, Target
from .support import Context, Stack, free_port, wait_for

NAME = "download"
BIG_SIDE = 4000


def _child(mode: str, folder, urls: list[str]) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "bench.download_child", mode, str(folder), *urls],
                          capture_output=True, text=True, timeout=600, cwd=str(support.ROOT),
                          env={**support.base_env()})
    if done.returncode != 0:
        raise RuntimeError(f"download child ({mode}) failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _sim_images(sim: str, n: int) -> list[str]:
    headers = {"Authorization": f"Bearer {support.API_KEY}"}
    ids = []
    for i in range(n):
        body = {"model": "google/nano-banana", "input": {"prompt": f"a lighthouse on a cliff at dawn, take {i}",
                                                          "image_size": ["1:1", "16:9", "4:3", "9:16"][i % 4]}}
        answer = requests.post(sim + "/api/v1/jobs/createTask", json=body, headers=headers, timeout=30).json()
        ids.append(answer["data"]["taskId"])
    urls = []
    for task_id in ids:
        def done(task_id=task_id):
            data = requests.get(sim + "/api/v1/jobs/recordInfo", params={"taskId": task_id}, headers=headers,
                                timeout=30).json().get("data") or {}
            return data if data.get("state") == "success" else None
        data = wait_for(done, 60, f"sim task {task_id}", interval=0.1)
        urls += json.loads(data["resultJson"])["resultUrls"]
    return urls


def _big_png(path) -> int:
    from PIL import Image
    Image.frombytes("RGB", (BIG_SIDE, BIG_SIDE), os.urandom(BIG_SIDE * BIG_SIDE * 3)).save(path, compress_level=0)
    return path.stat().st_size


def run(ctx: Context):
    n = 8 if ctx.quick else 24
    workdir = ctx.workdir("download")
    with Stack(workdir, support.base_env()) as stack:
        sim = support.start_sim(stack, "--duration", "0", "--rate-limit", "off")
        urls = _sim_images(sim, n)
        for url in urls:                       # render every picture once (the simulator caches them)
            requests.get(url, timeout=120).content
        kq = _child("kie", workdir / "kie", urls[:1] + urls)
        naive = _child("naive", workdir / "naive", urls[:1] + urls)
        files = workdir / "files"
        files.mkdir()
        size = _big_png(files / "big.png")
        port = free_port()
        proc, log = stack.spawn("files", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                          "--directory", str(files)])
        big_url = f"http://127.0.0.1:{port}/big.png"
        wait_for(lambda: _ok(big_url), 20, "file server", proc=proc, log_path=log)
        kq_big = _child("kie", workdir / "kie-big", [urls[0], big_url])
        naive_big = _child("naive", workdir / "naive-big", [urls[0], big_url])
    mbps = lambda d: d["bytes"] / d["seconds"] / 1e6  # noqa: E731
    growth = lambda d: (d["peak_kb"] - d["rss_before_kb"]) / 1024  # noqa: E731
    image_mb = kq["bytes"] / len(urls) / 1e6
    rows = [
        Row(NAME, f"kie.download MB/s, {len(urls)} real images", mbps(kq), mbps(naive), "requests .content to a file",
            None, note=f"{image_mb:.2f} MB per image on average (PNG/JPEG from the simulator)",
            details={"kie": kq, "naive": naive}),
        Row(NAME, f"peak RSS growth streaming a {size / 1e6:.0f} MB file (MB)", growth(kq_big), growth(naive_big),
            "requests .content", Target("figure", "<=", 8), note=f"{mbps(kq_big):.0f} MB/s streamed",
            details={"kie": kq_big, "naive": naive_big, "file_bytes": size}),
    ]
    return rows, None


def _ok(url: str) -> bool:
    try:
        return requests.head(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def plot(data, plots_dir):
    return []


if __name__ == "__main__":
    from .runner import main
    sys.exit(main([NAME, *sys.argv[1:]]))
