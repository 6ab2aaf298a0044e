"""The operator dashboard in a real browser (Debian's Chromium driven by Playwright) against a running system:
simulator, webhook, workers, beat, and the Procfile's ``dashboard`` process (through the container entry point).

A batch appears on the jobs page and turns succeeded without a reload (htmx polls a fragment); a failed job
shows its error; a job page shows its real image; the limiter chart renders; a hostile prompt fires no dialog
and stays text; a dashboard bound to a public address without a token refuses to start, and with one answers
the login page and nothing else until the token is given.  Screenshots of each page go to the run's temporary
folder (and to ``docs/screenshots/`` when ``KIE_UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from harness import API_KEY, ROOT, WEBHOOK_SECRET, unique
from worker.cli.stack import free_port, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ENTRYPOINT = str(ROOT / "deploy" / "entrypoint.sh")
TOKEN = "dash-token-" + "5f4e3d2c1b0a9988"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                                                    "(scripts/test installs it)")

DEPLOYMENT = dict(callbacks=True, hmac=False, start=dict(concurrency=3, user_worker=False))


def _start_dashboard(dep, name: str, **env) -> tuple[str, subprocess.Popen, Path]:
    port = free_port()
    proc, log = dep.stack.spawn(name, [ENTRYPOINT, "dashboard"],
                                env={"KIE_PROCFILE": str(ROOT / "Procfile"), "PORT": str(port),
                                     "PATH": f"{Path(os.sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                                     **env})
    return f"http://127.0.0.1:{port}", proc, log


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2, allow_redirects=False).status_code in (200, 303, 302)
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def dashboard(dep):
    url, proc, log = _start_dashboard(dep, "dashboard")
    wait_for(lambda: _answers(url + "/"), 60, "dashboard", proc=proc, log_path=log)
    return url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.dialogs = []
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.dismiss()))
    p.console_errors = []
    p.on("console", lambda m: p.console_errors.append(m.text) if m.type == "error" else None)
    yield p
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    if os.environ.get("KIE_UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy(png, target / png.name)


def _no_secrets(html: str) -> None:
    for secret in (API_KEY, WEBHOOK_SECRET, TOKEN):
        assert secret not in html
    assert not re.search(r"token=[0-9a-f]{64}", html)


def test_a_batch_appears_and_turns_succeeded_live(dep, dashboard, page, shots):
    tag = unique("live").replace(" ", "-")
    page.goto(f"{dashboard}/?q=")
    page.wait_for_selector("table.jobs")
    ids = [f"{tag}-{i}" for i in range(6)]
    for i, job_id in enumerate(ids):
        (dep.generate(f"a lantern in the fog, number {i}", job_id=job_id) | dep.download()).apply_async()
    # no reload: the table fragment is polled by htmx
    for job_id in ids:
        page.wait_for_selector(f'tr[data-job-id="{job_id}"]', timeout=30_000)
    for job_id in ids:
        page.wait_for_selector(f'tr.state-succeeded[data-job-id="{job_id}"]', timeout=60_000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1     # never reloaded
    assert page.dialogs == [] and page.console_errors == []
    page.screenshot(path=str(shots / "jobs.png"), full_page=True)
    _no_secrets(page.content())


def test_a_failed_job_shows_its_error_and_can_be_retried(dep, dashboard, page, shots):
    job_id = unique("failing").replace(" ", "-")
    dep.generate("a forbidden picture [sim:fail=400:content policy violated]", job_id=job_id).apply_async()
    dep.wait_job_state(job_id, ["failed"])
    page.goto(f"{dashboard}/jobs/{job_id}")
    assert "content policy violated" in page.inner_text(".error-message")
    assert page.inner_text("h1 .state") == "failed"
    assert page.locator("ol.timeline li").count() >= 2
    page.screenshot(path=str(shots / "job-failed.png"), full_page=True)
    page.click("text=Retry")
    page.wait_for_selector(".notice")
    assert page.inner_text(".notice") == "retried"


def test_a_job_page_shows_its_image_and_the_gallery_shows_results(dep, dashboard, page, shots):
    job_id = unique("pictured").replace(" ", "-")
    (dep.generate("a red fox in the snow, wide", job_id=job_id, image_size="16:9") | dep.download()) \
        .apply_async().get(timeout=60)
    page.goto(f"{dashboard}/jobs/{job_id}")
    img = page.wait_for_selector("img.thumb")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img, timeout=10_000)
    assert page.evaluate("img => img.naturalWidth", img) > 0
    page.screenshot(path=str(shots / "job.png"), full_page=True)
    page.goto(f"{dashboard}/gallery")
    first = page.wait_for_selector(".gallery img.thumb")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=first, timeout=10_000)
    page.screenshot(path=str(shots / "gallery.png"), full_page=True)


def test_the_limiter_chart_renders_with_the_recent_creates(dep, dashboard, page, shots):
    (dep.generate("a chart tick") | dep.download()).apply_async().get(timeout=60)
    page.goto(f"{dashboard}/limiter")
    page.wait_for_selector("svg.chart")
    assert page.locator("svg.chart rect.bar").count() >= 1
    assert page.locator("svg.chart line.envelope").count() == 1
    assert re.fullmatch(r"\d+ / \d+", page.inner_text("#in-window"))
    page.screenshot(path=str(shots / "limiter.png"), full_page=True)


def test_a_hostile_prompt_stays_text_and_fires_nothing(dep, dashboard, page):
    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    job_id = unique("hostile").replace(" ", "-")
    (dep.generate(hostile, job_id=job_id) | dep.download()).apply_async().get(timeout=60)
    for path in (f"/?q={job_id}", f"/jobs/{job_id}", "/gallery"):
        answer = page.goto(dashboard + path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page.goto(f"{dashboard}/jobs/{job_id}")
    assert hostile in page.inner_text("dd.prompt")          # shown as the text it is
    assert page.locator("dd.prompt img, dd.prompt script").count() == 0
    page.wait_for_timeout(300)   # give a handler that should never exist its chance to fire (no event to await)
    assert page.dialogs == []


def test_files_are_reachable_only_as_a_jobs_own_images(dep, dashboard):
    job_id = unique("files").replace(" ", "-")
    (dep.generate("a file check", job_id=job_id) | dep.download()).apply_async().get(timeout=60)
    assert requests.get(f"{dashboard}/files/{job_id}/0", timeout=10).headers["content-type"].startswith("image/")
    for path in (f"/files/{job_id}/1", f"/files/{job_id}/-1", "/files/no-such-job/0",
                 "/files/..%2f..%2fetc%2fpasswd/0", f"/files/{job_id}/0/../../../../etc/passwd"):
        assert requests.get(dashboard + path, timeout=10).status_code == 404, path


def test_retry_without_the_csrf_token_is_refused(dep, dashboard):
    answer = requests.post(f"{dashboard}/jobs/anything/retry", data={}, timeout=10)
    assert answer.status_code == 400 and "CSRF" in answer.text


def test_a_public_bind_needs_a_token_and_shows_only_the_login_without_it(dep, page, shots):
    url, proc, log = _start_dashboard(dep, "dashboard-open", KIE_DASHBOARD_BIND="0.0.0.0")
    assert proc.wait(timeout=60) != 0
    assert "KIE_DASHBOARD_TOKEN" in log.read_text(errors="replace")

    url, proc, log = _start_dashboard(dep, "dashboard-public", KIE_DASHBOARD_BIND="0.0.0.0",
                                      KIE_DASHBOARD_TOKEN=TOKEN)
    wait_for(lambda: _answers(url + "/login"), 60, "public dashboard", proc=proc, log_path=log)
    for path in ("/", "/limiter", "/gallery", "/jobs/x"):
        page.goto(url + path)
        assert page.url.startswith(url + "/login"), path
        assert page.locator("table, svg.chart, .gallery").count() == 0
    assert requests.get(url + "/fragments/jobs", headers={"HX-Request": "true"}, timeout=10).status_code == 401
    assert requests.get(url + "/files/x/0", timeout=10, allow_redirects=False).status_code in (302, 303, 401)
    page.goto(url + "/")                       # lands on /login?next=/
    page.screenshot(path=str(shots / "login.png"))
    page.fill("input[name=token]", "not-the-token-at-all")
    page.click("button:has-text('Log in')")
    assert page.locator("p.error").count() == 1
    page.fill("input[name=token]", TOKEN)
    page.click("button:has-text('Log in')")
    page.wait_for_selector("table.jobs")
    cookie = next(c for c in page.context.cookies() if c["name"] == "kie_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    _no_secrets(page.content())


def test_jobs_of_a_named_tenant_show_their_tenant(dep, dashboard, page):
    job_id = unique("tenanted").replace(" ", "-")
    dep.producer.signature("kie.generate", kwargs={"input": {"prompt": "a tenant's picture"}, "job_id": job_id,
                                                   "tenant": "acme", "priority": 7},
                           queue=dep.queue).apply_async().get(timeout=60)
    page.goto(f"{dashboard}/?q={job_id}")
    row = page.wait_for_selector(f'tr[data-job-id="{job_id}"]')
    assert page.locator("table.jobs th", has_text="Tenant").count() == 1
    assert row.query_selector("td.tenant").inner_text() == "acme p7"
