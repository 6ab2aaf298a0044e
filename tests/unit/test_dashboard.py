"""Tests of the dashboard's parts that need no browser: who may start it, the chart, durations, and the
file route's path checks (real Redis, a job record made by the job store's own transitions, files on disk)."""

from __future__ import annotations

import json

import pytest

import dashboard
from dashboard import access, charts, data
from worker import runtime
from worker.errors import ConfigError
from worker.settings import Settings

UNIT_REDIS_URL = "redis://127.0.0.1:6379/5"
TOKEN = "dash-unit-" + "0123456789abcdef"


def test_a_public_bind_without_a_token_refuses_to_start():
    with pytest.raises(ConfigError) as raised:
        dashboard.create_app(Settings(dashboard_bind="0.0.0.0"))
    assert raised.value.variable == "KIE_DASHBOARD_TOKEN" and "0.0.0.0" in str(raised.value)
    dashboard.create_app(Settings(dashboard_bind="0.0.0.0", dashboard_token=TOKEN))     # with one it starts
    dashboard.create_app(Settings(dashboard_bind="127.0.0.1"))                           # loopback needs none


@pytest.mark.parametrize("raw, problem", [("localhost", "IP address"), ("0.0.0.0:80", "IP address")])
def test_the_bind_and_token_settings_say_what_is_wrong(raw, problem):
    with pytest.raises(ConfigError, match=problem) as raised:
        Settings.from_env({"KIE_DASHBOARD_BIND": raw})
    assert raised.value.variable == "KIE_DASHBOARD_BIND"
    with pytest.raises(ConfigError, match="at least 16") as raised:
        Settings.from_env({"KIE_DASHBOARD_TOKEN": "short"})
    assert "short" not in str(raised.value)                       # the value itself is never echoed
    assert TOKEN in Settings.from_env({"KIE_DASHBOARD_TOKEN": TOKEN}).secrets()     # redacted from logs


def test_the_session_key_is_the_same_in_every_process_only_with_a_token():
    s = Settings(dashboard_token=TOKEN)
    assert access.session_key(s) == access.session_key(Settings(dashboard_token=TOKEN))
    assert access.session_key(Settings()) != access.session_key(Settings())
    assert TOKEN.encode() not in access.session_key(s)


def test_the_chart_draws_each_second_and_the_limit():
    svg = str(charts.creates_chart([0, 2, 0, 5, 1], limit=20, window=10.0))
    assert svg.count('class="bar"') == 3 and svg.count('class="envelope"') == 1
    assert "limit: 20 per 10 s" in svg
    # the trailing-window line reaches the sum of the window (8 creates here)
    assert svg.count("<polyline") == 1


def test_durations_of_a_finished_and_an_unfinished_job():
    done = {"created_at": "2026-01-01T00:00:00.000Z", "submitted_at": "2026-01-01T00:00:04.000Z",
            "finished_at": "2026-01-01T00:00:10.000Z"}
    assert data.durations(done) == {"waited": 4.0, "generating": 6.0, "total": 10.0}
    waiting = {"created_at": "2026-01-01T00:00:00.000Z", "submitted_at": None, "finished_at": None}
    t = data._seconds("2026-01-01T00:00:30.000Z")
    assert data.durations(waiting, now=t) == {"waited": 30.0, "generating": None, "total": 30.0}


@pytest.fixture
def rt(tmp_path, r, prefix):
    s = Settings(redis_url=UNIT_REDIS_URL, key_prefix=prefix, storage_dir=str(tmp_path / "output"))
    return runtime.build(s)


def _finished_with_files(rt, job_id: str, files: list[dict]) -> None:
    store = rt.store
    store.accept(job_id, model="google/nano-banana", input={"prompt": "p"}, timeout=60, waiter_id="w",
                 waiter={"id": "w", "chain": []}, first_claim_ms=0)
    _, _, token = store.claim_submit(job_id, lease_ms=10_000, unknown_grace_ms=1000)
    store.record_task(job_id, "t" * 32, first_check_ms=5000, timeout_ms=60_000, source="create")
    store.finish(job_id, "succeeded", {"task_id": "t" * 32, "result_urls": []})
    rt.redis.hset(store.keys.job(job_id), "files", json.dumps(files))


def test_result_files_resolve_only_inside_storage_and_only_as_images(rt, tmp_path):
    from worker.results.storage import storage_from_settings
    storage = storage_from_settings(rt.settings)
    stored = storage.store("job-1/0.png", [b"\x89PNG fake"], content_type="image/png")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    _finished_with_files(rt, "job-1", [
        {"uri": stored.uri, "content_type": "image/png"},
        {"uri": "file://" + str(outside), "content_type": "image/png"},                # outside the storage
        {"uri": stored.uri, "content_type": "text/html"},                              # not an image type
        {"uri": stored.uri.replace("job-1/0.png", "job-1/../../secret.png"), "content_type": "image/png"},
        {"uri": storage.uri_for("job-1/1.png"), "content_type": "image/png"},           # never stored
    ])
    chunks, content_type = data.result_file(rt, "job-1", 0)
    assert (b"".join(chunks), content_type) == (b"\x89PNG fake", "image/png")
    assert [data.result_file(rt, "job-1", n) for n in (1, 2, 3, 4, 5, -1)] == [None] * 6
    assert data.result_file(rt, "no-such-job", 0) is None


def test_the_tenant_column_appears_only_when_a_job_names_a_tenant():
    assert not data.has_tenants([{"tenant": "default"}, {"tenant": None}, {}])
    assert data.has_tenants([{"tenant": "default"}, {"tenant": "acme"}])
