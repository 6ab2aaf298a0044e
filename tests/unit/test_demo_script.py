"""``scripts/demo`` installs the project only when it is not installed or its packaging changed.

The script runs as written in a copy of the repository's layout whose ``.venv`` holds stand-ins
for ``python`` and ``kie-queue`` that record their calls, so no network or real install is needed.
"""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RECORD = 'echo "$(basename "$0") $*" >> "$(dirname "$0")/../../calls.log"\n'
# `python -m pip install ... -e .` "installs" the console script: a stand-in that records its call
FAKE_PYTHON = ("#!/usr/bin/env bash\n" + RECORD +
               'if [ "$1 $2 $3" = "-m pip install" ] && [ "${@: -1}" = "." ]; then\n'
               '  cp "$(dirname "$0")/kie-queue.stub" "$(dirname "$0")/kie-queue"\n'
               "fi\n")


def _layout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "demo", repo / "scripts" / "demo")
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", FAKE_PYTHON), ("kie-queue.stub", "#!/usr/bin/env bash\n" + RECORD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return repo


def _run(repo: Path) -> list[str]:
    log = repo / "calls.log"
    log.unlink(missing_ok=True)
    done = subprocess.run(["bash", str(repo / "scripts" / "demo"), "--jobs", "2"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_first_run_installs_then_runs_the_demo(tmp_path):
    repo = _layout(tmp_path)
    calls = _run(repo)
    assert any("-m pip install --quiet -e ." in c for c in calls)
    assert calls[-1] == "kie-queue demo --jobs 2"


def test_a_second_run_skips_the_install(tmp_path):
    repo = _layout(tmp_path)
    _run(repo)
    calls = _run(repo)
    assert calls == ["kie-queue demo --jobs 2"]


def test_a_changed_setup_cfg_or_a_missing_console_script_installs_again(tmp_path):
    repo = _layout(tmp_path)
    _run(repo)
    with open(repo / "setup.cfg", "a") as f:
        f.write("\n# a new dependency\n")
    assert any("pip install --quiet -e ." in c for c in _run(repo))
    assert _run(repo) == ["kie-queue demo --jobs 2"]
    (repo / ".venv" / "bin" / "kie-queue").unlink()
    assert any("pip install --quiet -e ." in c for c in _run(repo))
