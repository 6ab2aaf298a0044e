"""One download run in its own process, for the ``download`` measure: ``python -m bench.download_child MODE DIR WARM_URL URL...``.

``MODE`` is ``kie`` (``worker.results.fetching.download_result``, the body of ``kie.download``) or
``naive`` (``requests.get(url).content`` written to a file, what people write).  A warm-up download
of the first URL comes first (it is not timed, and not counted in the peak); then every URL is downloaded and the process prints one JSON line:
bytes, seconds, the RSS before and its peak during the downloads (KB).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak RSS of this process image, KB) from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Start the peak RSS afresh (Linux: writing 5 to clear_refs resets VmHWM to the current RSS).
    ``ru_maxrss`` would not do: Linux carries it over from the parent across fork and exec."""
    Path("/proc/self/clear_refs").write_text("5")


def main(argv: list[str]) -> int:
    mode, folder, urls = argv[0], Path(argv[1]), argv[2:]
    import requests

    from worker.results.fetching import download_result
    from worker.results.storage import LocalStorage

    storage = LocalStorage(folder)

    def kie(url_list, job):
        result = download_result({"job_id": job, "result_urls": url_list}, storage=storage,
                                 allow_hosts=["127.0.0.1"], max_bytes=52428800, timeout=120)
        return sum(f["bytes"] for f in result["files"])

    def naive(url_list, job):
        total = 0
        for i, url in enumerate(url_list):
            body = requests.get(url, timeout=120).content
            (folder / f"{job}-{i}.bin").write_bytes(body)
            hashlib.sha256(body).hexdigest()
            total += len(body)
        return total

    fetch = kie if mode == "kie" else naive
    fetch(urls[:1], "warm")
    _reset_peak()
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    total = sum(fetch([u], f"job{i}") for i, u in enumerate(urls[1:]))
    seconds = time.perf_counter() - t0
    print(json.dumps({"bytes": total, "seconds": seconds, "rss_before_kb": before, "peak_kb": _status_kb("VmHWM")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
