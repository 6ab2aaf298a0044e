"""The README's tree of modules is the tree on disk, and the import contracts hold."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_tree() -> set[str]:
    """Every ``.py`` path the README's tree block names (folders by indentation, two spaces a level;
    a folder stands for its ``__init__.py``)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- tree:", 1)[1].split("```", 2)[1]
    paths, folders = set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        folders = folders[:depth]
        names = re.split(r"\s{2,}", line.strip())
        first = names[0]
        if first.endswith("/") and depth == 0 and first.count("/") > 1:
            continue   # a one-line entry such as tests/unit/
        if first.endswith("/"):
            folders.append(first.rstrip("/"))
            paths.add("/".join([*folders, "__init__.py"]))
            continue
        for name in names:
            if name.endswith(".py"):
                paths.add("/".join([*folders, name]))
    return paths


def test_readme_tree_lists_every_module_of_worker_and_webhook():
    on_disk = {str(p.relative_to(ROOT)) for top in ("worker", "webhook") for p in (ROOT / top).rglob("*.py")}
    listed = readme_tree()
    assert {p for p in listed if p.startswith(("worker/", "webhook/"))} == on_disk, \
        f"only in README: {sorted(listed - on_disk)}; only on disk: {sorted(on_disk - listed)}"


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), str(ROOT / "setup.cfg")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def test_the_web_app_loads_no_task_code():
    code = ("import sys, webhook\n"
            "from worker.settings import Settings\n"
            "webhook.create_app(Settings())\n"
            "loaded = sorted(m for m in sys.modules if m in ('worker.tasks', 'worker.celery_app', 'worker.jobs',\n"
            "                 'worker.bootsteps', 'worker.runtime') or m.startswith('worker.jobs.'))\n"
            "print(loaded)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_importing_a_part_of_worker_loads_no_celery_app():
    code = ("import sys, worker.store.jobstore, worker.kie.client, worker.results.fetching\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')"
            " or m in ('worker.tasks', 'worker.celery_app')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_names_still_work():
    code = ("import worker\n"
            "from worker import generate, download, app\n"
            "print(generate.name, download.name, sorted(n for n in app.tasks if n.startswith('kie.')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["kie.generate", "kie.download", "['kie.check',", "'kie.complete',",
                                   "'kie.download',", "'kie.generate',", "'kie.submit',", "'kie.sweep']"]
