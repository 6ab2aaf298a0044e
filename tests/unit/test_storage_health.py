"""Tests of worker.results.storage.health: the worker's start-up refusal and the ``/healthz`` storage check.

S3 cases run against moto's standalone server (and, for refused credentials, a moto server that checks
them); the webhook's ``/healthz`` is exercised in-process with the real Redis.
"""

from __future__ import annotations

import logging

import pytest

from s3support import aws_env
from worker.cli.stack import free_port
from worker.results.storage import health
from worker.settings import Settings

UNIT_REDIS = "redis://127.0.0.1:6379/5"


@pytest.fixture
def s3_env(monkeypatch, moto_server):
    for name, value in aws_env(moto_server.endpoint).items():
        monkeypatch.setenv(name, value)
    return moto_server


def settings(**env) -> Settings:
    return Settings.from_env({"REDIS_URL": UNIT_REDIS, **env})


def test_usable_storage_starts(tmp_path, s3_env):
    assert health.startup_problem(settings(KIE_STORAGE_URL=str(tmp_path / "new" / "folder"))) is None
    bucket = s3_env.new_bucket()
    assert health.startup_problem(settings(KIE_STORAGE_URL=f"s3://{bucket}/x",
                                           KIE_S3_ENDPOINT_URL=s3_env.endpoint)) is None


def test_an_unwritable_folder_names_the_variable_it_came_from(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    problem = health.startup_problem(settings(KIE_STORAGE_DIR=str(blocker / "out")))
    assert problem.variable == "KIE_STORAGE_DIR" and "not a folder" in problem.message


def test_a_missing_bucket_stops_the_worker(s3_env):
    problem = health.startup_problem(settings(KIE_STORAGE_URL="s3://kie-no-such-bucket/x",
                                              KIE_S3_ENDPOINT_URL=s3_env.endpoint))
    assert problem.variable == "KIE_STORAGE_URL" and "'kie-no-such-bucket' does not exist" in problem.message


def test_refused_credentials_stop_the_worker(monkeypatch, moto_auth_server):
    for name, value in aws_env(moto_auth_server.endpoint).items():
        monkeypatch.setenv(name, value)
    problem = health.startup_problem(settings(KIE_STORAGE_URL=f"s3://{moto_auth_server.bucket}",
                                              KIE_S3_ENDPOINT_URL=moto_auth_server.endpoint))
    assert problem.variable == "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"


def test_an_unreachable_endpoint_does_not_stop_the_worker(monkeypatch, caplog):
    endpoint = f"http://127.0.0.1:{free_port()}"
    for name, value in aws_env(endpoint).items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="kie_queue.storage"):
        assert health.startup_problem(settings(KIE_STORAGE_URL="s3://kie-bucket", KIE_S3_ENDPOINT_URL=endpoint,
                                               KIE_HTTP_TIMEOUT="1")) is None
    assert "downloads will retry" in caplog.text


def test_health_is_cached_and_fit_for_a_public_page(s3_env):
    bucket = f"kie-later-{free_port()}"
    s = settings(KIE_STORAGE_URL=f"s3://{bucket}/x", KIE_S3_ENDPOINT_URL=s3_env.endpoint)
    clock = [1000.0]
    now = lambda: clock[0]   # noqa: E731
    assert health.health(s, now=now) == "error: check KIE_STORAGE_URL"   # no bucket name, no reason
    s3_env.client().create_bucket(Bucket=bucket)
    clock[0] += 29
    assert health.health(s, now=now) == "error: check KIE_STORAGE_URL"   # the cached answer
    clock[0] += 2
    assert health.health(s, now=now) == "ok"


def test_healthz_reports_storage_but_stays_200(s3_env):
    from webhook.app import build_app

    app = build_app(settings(KIE_STORAGE_URL="s3://kie-missing-for-healthz/x", KIE_S3_ENDPOINT_URL=s3_env.endpoint,
                             KIE_KEY_PREFIX="t-healthz"))
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 200
    assert answer.json == {"status": "degraded", "checks": {"redis": "ok", "broker": "ok",
                                                            "storage": "error: check KIE_STORAGE_URL"}}
