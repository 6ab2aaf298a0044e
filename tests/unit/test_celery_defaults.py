"""Tests of worker.celery_app: the safe defaults, ``unsafe_settings`` and the stable task names.

The environment is set the way ``tests/harness.py`` sets it for a deployment.  ``worker.app``'s
configuration is read lazily, once per process, so a test that depends on the environment builds a
fresh app with ``create_app()`` (and restores ``worker.app`` as the current app afterwards).
"""

from __future__ import annotations

import gc
import os
import secrets
import weakref

import pytest
from celery import Celery, signals

import worker
from worker.celery_app import GC_EVERY_TASKS, create_app
from worker.celery_conf import SAFE, VISIBILITY_TIMEOUT, unsafe_settings
from worker.settings import settings

REDIS_URL = "redis://127.0.0.1:6379/5"
STABLE_NAMES = ("kie.generate", "kie.download", "kie.submit", "kie.check", "kie.complete", "kie.sweep")


@pytest.fixture
def env(monkeypatch):
    name = secrets.token_hex(4)
    values = {
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        "KIE_API_KEY": "sk-celery-test-" + "1234abcd",
        "KIE_KEY_PREFIX": f"t-cel-{name}",
        "KIE_QUEUE": f"q-{name}",
        "KIE_SWEEP_INTERVAL": "2",
    }
    for key in list(os.environ):
        if key.startswith(("KIE_", "CELERY_")):
            monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings.cache_clear()
    yield values
    settings.cache_clear()


@pytest.fixture
def fresh_app(env):
    app = create_app()
    yield app
    worker.app.set_current()


def safe_conf(**changes) -> dict:
    conf = {**SAFE, "broker_url": REDIS_URL,
            "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT}}
    conf.update(changes)
    return conf


# -- unsafe_settings --------------------------------------------------------------------------


def test_the_apps_own_configuration_is_safe(env):
    assert unsafe_settings(worker.app.conf) == []


def test_a_fresh_apps_configuration_is_safe(fresh_app):
    assert unsafe_settings(fresh_app.conf) == []


def test_a_safe_dict_is_safe():
    assert unsafe_settings(safe_conf()) == []


@pytest.mark.parametrize("name, value", [
    ("task_acks_late", False),
    ("task_reject_on_worker_lost", False),
    ("task_reject_on_worker_lost", None),
    ("worker_prefetch_multiplier", 4),
    ("worker_deduplicate_successful_tasks", True),
    ("task_serializer", "pickle"),
    ("result_serializer", "pickle"),
])
def test_each_undone_default_is_named(name, value):
    assert unsafe_settings(safe_conf(**{name: value})) == [name]


def test_low_visibility_timeout_on_a_redis_broker_is_named():
    low = {"visibility_timeout": 60}
    assert unsafe_settings(safe_conf(broker_transport_options=low)) == \
        ["broker_transport_options.visibility_timeout"]
    assert unsafe_settings(safe_conf(broker_url="rediss://h:6380/0", broker_transport_options=low)) == \
        ["broker_transport_options.visibility_timeout"]
    # not a concern on RabbitMQ, and Redis' own default (1 h) is fine
    assert unsafe_settings(safe_conf(broker_url="amqp://guest@localhost//", broker_transport_options=low)) == []
    assert unsafe_settings(safe_conf(broker_transport_options={})) == []
    assert unsafe_settings(safe_conf(broker_transport_options=None)) == []
    assert unsafe_settings(safe_conf(broker_transport_options={"visibility_timeout": 300})) == []


def test_several_undone_defaults_are_all_named():
    bad = unsafe_settings(safe_conf(task_acks_late=False, worker_prefetch_multiplier=4,
                                    task_serializer="pickle",
                                    broker_transport_options={"visibility_timeout": 30}))
    assert sorted(bad) == sorted(["task_acks_late", "worker_prefetch_multiplier", "task_serializer",
                                  "broker_transport_options.visibility_timeout"])


def test_celerys_own_defaults_are_named_unsafe():
    bare = Celery("bare", set_as_current=False)
    bare.conf.broker_url = REDIS_URL
    bad = unsafe_settings(bare.conf)
    assert {"task_acks_late", "task_reject_on_worker_lost", "worker_prefetch_multiplier"} <= set(bad)
    assert "task_serializer" not in bad      # Celery's default serializer is JSON already
    worker.app.set_current()


def test_accepting_pickle_is_named():
    assert unsafe_settings(safe_conf(accept_content=["json", "pickle"])) != []


# -- the defaults -----------------------------------------------------------------------------


def test_the_defaults_are_json_only(fresh_app):
    conf = fresh_app.conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]
    for key in ("task_serializer", "result_serializer"):
        assert worker.app.conf[key] == "json"
    assert list(worker.app.conf.accept_content) == ["json"]


def test_the_defaults_come_from_the_environment(fresh_app, env):
    conf = fresh_app.conf
    assert conf.broker_url == env["CELERY_BROKER_URL"]
    assert conf.result_backend == env["CELERY_RESULT_BACKEND"]
    assert conf.task_default_queue == env["KIE_QUEUE"]
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_deduplicate_successful_tasks is False
    assert conf.broker_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT >= 300
    assert conf.result_extended is True
    sweep = conf.beat_schedule["kie-sweep"]
    assert sweep["task"] == "kie.sweep" and sweep["schedule"] == 2.0
    assert sweep["options"]["queue"] == env["KIE_QUEUE"]


def test_result_keys_expire_with_the_job_retention(monkeypatch, env, r):
    """``result_expires`` follows ``KIE_JOB_RETENTION`` in the worker app and in producers: each process that
    stores a result (a worker's task, a resumed waiter, a producer) gives its key that TTL (Celery's Redis backend
    SETEXes it).  Not Celery's default day, nor the 7 days it once was."""
    from worker.celery_conf import producer
    from worker.settings import Settings

    assert create_app().conf.result_expires == 7 * 86400      # the default retention
    worker.app.set_current()
    monkeypatch.setenv("KIE_JOB_RETENTION", "90.7")
    settings.cache_clear()
    apps = {"worker": create_app(), "producer": producer(Settings.from_env(), name="unit-expiry")}
    worker.app.set_current()
    try:
        for name, app in apps.items():
            assert app.conf.result_expires == 90, name
            ok, failed = f"unit-expiry-{secrets.token_hex(6)}", f"unit-expiry-{secrets.token_hex(6)}"
            app.backend.store_result(ok, {"done": True}, "SUCCESS")
            app.backend.store_result(failed, ValueError("no"), "FAILURE")
            try:
                for task_id in (ok, failed):
                    ttl = r.ttl(f"celery-task-meta-{task_id}")
                    assert 80 <= ttl <= 90.7, (name, task_id, ttl)
            finally:
                r.delete(f"celery-task-meta-{ok}", f"celery-task-meta-{failed}")
    finally:
        for app in apps.values():
            app.close()


def test_an_explicit_setting_wins_over_the_defaults(fresh_app):
    fresh_app.conf.worker_prefetch_multiplier = 8
    assert unsafe_settings(fresh_app.conf) == ["worker_prefetch_multiplier"]


def test_amqp_broker_is_accepted(monkeypatch, env):
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    settings.cache_clear()
    app = create_app()
    try:
        assert app.conf.broker_url.startswith("amqp://")
        assert unsafe_settings(app.conf) == []
    finally:
        worker.app.set_current()


# -- task names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STABLE_NAMES)
def test_stable_task_names_are_registered(name):
    assert name in worker.app.tasks
    assert worker.app.tasks[name].name == name


def test_public_tasks_are_importable_from_the_package():
    assert worker.generate.name == "kie.generate"
    assert worker.download.name == "kie.download"
    assert worker.generate.app is worker.app


def test_importing_reads_no_configuration():
    import subprocess
    import sys

    # a bad environment does not break `import worker`; the first use of the configuration reports it
    code = ("import worker, worker.tasks\n"
            "print('imported')\n"
            "from worker.errors import ConfigError\n"
            "try:\n"
            "    worker.app.conf.broker_url\n"
            "except ConfigError as exc:\n"
            "    print('first use:', exc.variable)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "REDIS_URL": "nope"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["imported", "first use: REDIS_URL"]


def test_prefetch_is_disabled_on_redis_brokers_only():
    from worker.celery_conf import shared_conf
    from worker.settings import Settings
    assert shared_conf(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/5"}))["worker_disable_prefetch"] is True
    sentinel = Settings.from_env({"REDIS_URL": "sentinel://127.0.0.1:26379/1", "KIE_SENTINEL_MASTER": "kie"})
    conf = shared_conf(sentinel)
    assert conf["worker_disable_prefetch"] is True
    assert conf["broker_transport_options"]["master_name"] == "kie"
    assert conf["result_backend_transport_options"]["master_name"] == "kie"
    amqp = Settings.from_env({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"})
    assert "worker_disable_prefetch" not in shared_conf(amqp)
    assert "master_name" not in shared_conf(amqp)["broker_transport_options"]


# -- pool-process garbage collection ----------------------------------------------------------

class _Cycle:
    """An object in a reference cycle: only a collection frees it."""

    def __init__(self):
        self.me = self


@pytest.fixture
def full_collections():
    """The full collections that run while the test does, with automatic collection off (so every one
    counted is an explicit ``gc.collect()``)."""
    seen: list[int] = []

    def callback(phase, info):
        if phase == "stop" and info["generation"] == 2:
            seen.append(1)

    was_enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(callback)
    yield seen
    gc.callbacks.remove(callback)
    if was_enabled:
        gc.enable()


def _task_ends():
    """What Celery's tracer sends after each task, in a pool process."""
    signals.task_postrun.send(sender=None, task_id="t" * 32, task=None, args=(), kwargs={}, retval=None,
                              state="SUCCESS")


def test_a_pool_process_collects_its_garbage_every_n_tasks(full_collections):
    for _ in range(GC_EVERY_TASKS):             # wherever earlier tests left the count: up to the next collection
        _task_ends()
        if full_collections:
            break
    assert full_collections, f"no full collection in {GC_EVERY_TASKS} tasks"
    full_collections.clear()
    garbage = weakref.ref(_Cycle())
    for _ in range(GC_EVERY_TASKS - 1):
        _task_ends()
    assert garbage() is not None and not full_collections
    _task_ends()
    assert garbage() is None and len(full_collections) == 1


def test_a_pool_process_freezes_what_it_inherited(env):
    gc.unfreeze()
    try:
        signals.worker_process_init.send(sender=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
