"""``submit --out DIR``: copying a finished job's stored files into a folder of the user's.

The files keep their type's extension and are named after the job: ``<job_id>.png``, and
``<job_id>-1.png`` ... for a job with several images.  Only files stored on this machine can be
copied (``files[].path`` is a local path); others are reported, not fetched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .failures import CliFailure


def copy_results(result: dict, out: Path) -> list[str]:
    """Copy every file of ``result`` into ``out``; returns the new paths."""
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for i, f in enumerate(result.get("files") or []):
        src = Path(str(f.get("path") or ""))
        if not f.get("path") or not src.is_file():
            where = f.get("path") or f.get("uri")
            raise CliFailure(f"job {result.get('job_id')}: {where!r} is not a file on this machine, so --out "
                             "cannot copy it (object storage, or another host's folder)")
        name = f"{result['job_id']}{'' if i == 0 else f'-{i}'}{src.suffix}"
        dest = out / name
        shutil.copyfile(src, dest)
        copied.append(os.fspath(dest))
    return copied
