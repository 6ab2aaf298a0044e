"""Reading a ``submit --file`` file into checked :class:`~worker.cli.enqueue.JobSpec` rows.

Two formats, told by the file name (``.csv``; ``.jsonl``/``.ndjson``/``.json``) or else by the first
character (``{`` is JSONL):

* JSONL: one ``input`` object per line (``{"prompt": "...", "image_size": "16:9"}``), optionally with
  a ``job_id`` key, which is taken out of the input.  Blank lines are skipped.
* CSV with a header: a ``prompt`` column, optional ``image_size``, ``output_format`` and ``job_id``
  columns; any other column is passed in ``input`` too (the model's schema decides).  Empty cells
  are left out.

Every row is checked with the worker's own code before anything is sent; a job id used twice in
one file is a bad row too.  Any bad row raises :class:`~worker.cli.failures.BadRows` with every
problem and its line number, so a file is enqueued whole or not at all.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import InvalidInput
from .enqueue import JobSpec
from .failures import BadRows, input_message


def read_specs(path: Path, *, model: str, timeout: float | None, allow_unknown_model: bool,
               defaults: dict, tenant: str | None = None, priority: int = 0) -> list[JobSpec]:
    """Every row of ``path`` as a checked spec (``defaults`` fill input fields a row leaves out)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRows(str(path), [(0, f"cannot read the file: {exc}")]) from None
    rows, problems = _parse(path, text)
    specs, seen = [], {}
    for line, row in rows:
        inp = {**defaults, **row}
        job_id = inp.pop("job_id", None)
        spec = JobSpec(inp, model, job_id, timeout, allow_unknown_model, line=line, tenant=tenant, priority=priority)
        try:
            spec.check()
        except InvalidInput as exc:
            problems.append((line, input_message(exc)))
            continue
        if job_id is not None and job_id in seen:
            problems.append((line, f"job_id: {job_id!r} is already used on line {seen[job_id]}"))
            continue
        if job_id is not None:
            seen[job_id] = line
        specs.append(spec)
    if not rows and not problems:
        problems.append((0, "no rows"))
    if problems:
        raise BadRows(str(path), sorted(problems))
    return specs


def _parse(path: Path, text: str) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _parse_csv(text)
    if suffix in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{"):
        return _parse_jsonl(text)
    return _parse_csv(text)


def _parse_jsonl(text: str):
    rows, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append((number, f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(value, dict):
            problems.append((number, f"input: must be a JSON object, got {type(value).__name__}"))
            continue
        rows.append((number, value))
    return rows, problems


def _parse_csv(text: str):
    rows, problems = [], []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if "prompt" not in header:
        return [], [(1, f"the header must have a 'prompt' column, got {header!r}")]
    start = reader.line_num + 1
    for record in reader:
        if None in record:
            problems.append((start, f"more cells than the header has columns: {record[None]!r}"))
        else:
            row = {k: v for k, v in record.items() if k and v not in (None, "")}
            if row:
                rows.append((start, row))
        start = reader.line_num + 1
    return rows, problems
