"""The figures of a run: one ``Row`` per figure, the printed table, ``results.json`` and the machine's description.

A row holds the figure, the baseline measured in the same run (or ``None``), their ratio, and the
target it is held to: ``Target("ratio", ">=", 0.5)`` compares the ratio, ``Target("figure", "<=",
2048)`` the figure itself, ``None`` means "reported only".  :func:`within_noise` is the CI check:
a row fails it only when it misses its target by more than ``slack`` (20 %).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Target:
    of: str          # "ratio" or "figure"
    op: str          # ">=" or "<="
    value: float

    def __str__(self) -> str:
        return f"{self.of} {self.op} {self.value:g}"

    def met(self, row: "Row", slack: float = 0.0) -> bool:
        x = row.ratio if self.of == "ratio" else row.figure
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return False
        if self.op == ">=":
            return x >= self.value * (1 - slack)
        return x <= self.value * (1 + slack)


@dataclasses.dataclass
class Row:
    measure: str
    name: str                    # what the figure is, with its unit
    figure: float | None
    baseline: float | None = None
    baseline_label: str = ""
    target: Target | None = None
    extra_ok: bool = True        # a second condition of the target (e.g. zero 429s)
    bound: Target | None = None  # where the target is missed for a documented reason: the floor CI holds it to
    note: str = ""
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.figure is None or not self.baseline:
            return None
        return self.figure / self.baseline

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.target.met(self) and self.extra_ok

    def within_noise(self, slack: float = 0.2) -> bool:
        """False only when the target is missed by more than ``slack`` and, if the row has a documented
        ``bound``, that is missed too (or the target's exact condition fails)."""
        if self.target is None:
            return True
        return self.extra_ok and (self.target.met(self, slack) or (self.bound is not None and self.bound.met(self)))

    def as_json(self) -> dict:
        return {"measure": self.measure, "name": self.name, "figure": self.figure, "baseline": self.baseline,
                "baseline_label": self.baseline_label, "ratio": self.ratio,
                "target": str(self.target) if self.target else "report",
                "bound": str(self.bound) if self.bound else None,
                "pass": self.passed, "conditions_ok": self.extra_ok, "note": self.note, "details": self.details}


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if x == 0:
            return "0"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        if abs(x) >= 1:
            return f"{x:.2f}"
        return f"{x:.3g}"
    return str(x)


def fixed(value, digits=2) -> str:
    """A figure with ``digits`` decimals for the comparison tables (``-`` for None)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def aligned(headers: list[str], cells: list[list[str]]) -> str:
    """A plain-text table: the header, a rule, one line per row, columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in cells + [headers]) for i in range(len(headers))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(row) for row in cells])


def table(rows: list[Row]) -> str:
    headers = ["measure", "figure", "value", "baseline", "ratio", "target", "pass"]
    cells = [[r.measure, r.name, _fmt(r.figure), _fmt(r.baseline), _fmt(r.ratio),
              str(r.target) if r.target else "report",
              {True: "yes", False: "NO", None: "-"}[r.passed]] for r in rows]
    return aligned(headers, cells)


def markdown_table(rows: list[Row]) -> str:
    out = ["| measure | figure | value | baseline | ratio | target | pass |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r.name.replace("|", "\\|")
        out.append(f"| {r.measure} | {name} | {_fmt(r.figure)} | {_fmt(r.baseline)} | {_fmt(r.ratio)} | "
                   f"{str(r.target) if r.target else 'report'} | {({True: 'yes', False: 'no', None: '-'})[r.passed]} |")
    return "\n".join(out)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict:
    """Where and with what the run happened (no secrets: host name, CPU, load, versions)."""
    try:
        redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                       timeout=10).stdout.split()[2].removeprefix("v=")
    except (OSError, IndexError, subprocess.SubprocessError):
        redis_version = "-"
    cpu = platform.processor() or "-"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "host": socket.gethostname(), "cpus": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 2**20, 1),
        "os": platform.platform(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": {"python": sys.version.split()[0], "kie-queue": _version("kie-queue"),
                     "celery": _version("celery"), "kombu": _version("kombu"), "redis-py": _version("redis"),
                     "redis-server": redis_version, "flask": _version("flask"), "gunicorn": _version("gunicorn"),
                     "requests": _version("requests")},
    }


def write_results(path: Path, rows: list[Row], *, quick: bool, started: float, load: list, extra: dict) -> None:
    info = machine()
    info["load_average_at_start"] = load
    doc = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "quick": quick,
           "seconds": round(time.time() - started, 1), "machine": info, "measures": [r.as_json() for r in rows],
           **extra}
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
