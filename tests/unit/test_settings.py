"""Tests of worker.settings: every environment variable parsed and checked in one place.

``Settings.from_env`` is given a mapping (never the process environment), except in the one test of
the cached ``settings()`` accessor, which uses pytest's ``monkeypatch`` and clears the cache after.
"""

from __future__ import annotations

import math
import os

import pytest

from worker.errors import ConfigError
from worker.settings import RateLimit, Settings, settings, sentinel_nodes

API_KEY = "sk-settings-test-4f1d2c3b"
SECRET_A = "whsec-settings-A-91ab"
SECRET_B = "whsec-settings-B-72cd"
HMAC_KEY = "hmac-settings-5e6f7a8b"


def from_env(**env) -> Settings:
    return Settings.from_env(env)


def config_error(**env) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return info.value


# -- defaults -----------------------------------------------------------------------------------


def test_defaults_match_the_design_table():
    s = from_env()
    assert s.api_key is None
    assert s.base_url == "https://api.kie.ai"
    assert s.callback_url is None
    assert s.webhook_secrets == () and s.webhook_secret is None
    assert s.webhook_hmac_key is None
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.broker_url == s.redis_url and s.result_backend == s.redis_url
    assert s.rate_limit == RateLimit(20, 10.0)
    assert s.max_in_flight == 100
    assert s.job_timeout == 900.0
    assert s.storage_dir == "./kie-output"
    assert s.download_allow_hosts == ()
    assert s.key_prefix == "kie"
    assert s.queue == "celery"
    assert s.verify_callbacks is True
    assert s.secrets() == []


def test_blank_values_mean_default():
    s = from_env(KIE_RATE_LIMIT="  ", KIE_MAX_IN_FLIGHT="", KIE_QUEUE=" ", REDIS_URL="")
    assert s.rate_limit == RateLimit(20, 10.0)
    assert s.max_in_flight == 100
    assert s.queue == "celery"
    assert s.redis_url == "redis://localhost:6379/0"


def test_require_api_key():
    with pytest.raises(ConfigError) as info:
        from_env().require_api_key()
    assert info.value.variable == "KIE_API_KEY"
    assert from_env(KIE_API_KEY=API_KEY).require_api_key() == API_KEY


# -- every variable -----------------------------------------------------------------------------


def test_every_variable_is_read():
    s = from_env(
        KIE_API_KEY=f"  {API_KEY}  ",
        KIE_BASE_URL="http://127.0.0.1:8011/",
        KIE_CALLBACK_URL="https://hooks.example.com/base/",
        KIE_WEBHOOK_SECRET=SECRET_A,
        KIE_WEBHOOK_HMAC_KEY=HMAC_KEY,
        REDIS_URL="redis://127.0.0.1:6379/4",
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
        CELERY_RESULT_BACKEND="redis://127.0.0.1:6379/6",
        KIE_RATE_LIMIT="7/3s",
        KIE_MAX_IN_FLIGHT="12",
        KIE_JOB_TIMEOUT="61.5",
        KIE_STORAGE_DIR="/tmp/kie-out",
        KIE_DOWNLOAD_ALLOW_HOSTS="127.0.0.1, 10.0.0.0/8 ,,localhost",
        KIE_KEY_PREFIX="tenant-a:kie",
        KIE_QUEUE="kie.jobs",
        KIE_HTTP_TIMEOUT="2.5",
        KIE_VERIFY_CALLBACKS="off",
        KIE_WEBHOOK_TOLERANCE="30",
        KIE_CALLBACK_GRACE="0",
        KIE_UNKNOWN_OUTCOME_GRACE="5",
        KIE_MAX_ATTEMPTS="3",
        KIE_BACKOFF_BASE="0.2",
        KIE_BACKOFF_CAP="4",
        KIE_SWEEP_INTERVAL="0.5",
        KIE_DOWNLOAD_MAX_BYTES="1024",
        KIE_WEBHOOK_MAX_BODY="2048",
    )
    assert s.api_key == API_KEY
    assert s.base_url == "http://127.0.0.1:8011"
    assert s.callback_url == "https://hooks.example.com/base"
    assert s.webhook_secrets == (SECRET_A,) and s.webhook_secret == SECRET_A
    assert s.webhook_hmac_key == HMAC_KEY
    assert s.redis_url == "redis://127.0.0.1:6379/4"
    assert s.broker_url == "amqp://guest:guest@127.0.0.1:5672//"
    assert s.result_backend == "redis://127.0.0.1:6379/6"
    assert s.rate_limit == RateLimit(7, 3.0)
    assert s.max_in_flight == 12 and isinstance(s.max_in_flight, int)
    assert s.job_timeout == 61.5
    assert s.storage_dir == "/tmp/kie-out"
    assert s.download_allow_hosts == ("127.0.0.1", "10.0.0.0/8", "localhost")
    assert s.key_prefix == "tenant-a:kie"
    assert s.queue == "kie.jobs"
    assert s.http_timeout == 2.5
    assert s.verify_callbacks is False
    assert s.callback_tolerance == 30.0
    assert s.callback_grace == 0.0
    assert s.unknown_outcome_grace == 5.0
    assert s.max_attempts == 3
    assert s.backoff_base == 0.2 and s.backoff_cap == 4.0
    assert s.sweep_interval == 0.5
    assert s.download_max_bytes == 1024
    assert s.webhook_max_body == 2048
    assert set(s.secrets()) == {API_KEY, SECRET_A, HMAC_KEY, "guest"}   # the broker URL's password too


def test_broker_and_backend_follow_redis_url():
    s = from_env(REDIS_URL="rediss://cache.example:6380/2")
    assert s.broker_url == s.result_backend == "rediss://cache.example:6380/2"


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("False", False), ("no", False), ("OFF", False),
])
def test_flag_spellings(raw, expected):
    assert from_env(KIE_VERIFY_CALLBACKS=raw).verify_callbacks is expected


def test_flag_rejects_other_words():
    err = config_error(KIE_VERIFY_CALLBACKS="maybe")
    assert err.variable == "KIE_VERIFY_CALLBACKS"
    assert "'maybe'" in str(err)


# -- KIE_RATE_LIMIT -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw, limit, window", [
    ("20/10s", 20, 10.0),
    ("2/s", 2, 1.0),
    ("100/min", 100, 60.0),
    ("100/m", 100, 60.0),
    ("1000/h", 1000, 3600.0),
    ("1000/hour", 1000, 3600.0),
    ("5/1.5s", 5, 1.5),
    ("5/500ms", 5, 0.5),
    ("3/10sec", 3, 10.0),
    (" 20 / 10 s ", 20, 10.0),
])
def test_rate_limit_forms(raw, limit, window):
    rl = from_env(KIE_RATE_LIMIT=raw).rate_limit
    assert (rl.limit, rl.window) == (limit, window)
    assert isinstance(rl.limit, int)


def test_rate_limit_str_round_trips():
    for raw in ("20/10s", "5/1.5s", "1000/h"):
        rl = RateLimit.parse(raw)
        assert RateLimit.parse(str(rl)) == rl


@pytest.mark.parametrize("raw", [
    "20", "twenty/10s", "20/10x", "20/", "/10s", "0/10s", "20/0s", "20/0.0s", "-1/10s", "20/-10s",
    "20/10s/5", "1.5/10s", "20 per 10s", "20/s10",
])
def test_rate_limit_malformed_names_variable_and_value(raw):
    err = config_error(KIE_RATE_LIMIT=raw)
    assert err.variable == "KIE_RATE_LIMIT"
    assert "KIE_RATE_LIMIT" in str(err)
    assert repr(raw.strip()) in str(err)


# -- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, raw", [
    ("KIE_MAX_IN_FLIGHT", "0"),
    ("KIE_MAX_IN_FLIGHT", "-5"),
    ("KIE_JOB_TIMEOUT", "0.5"),
    ("KIE_HTTP_TIMEOUT", "0.01"),
    ("KIE_WEBHOOK_TOLERANCE", "0"),
    ("KIE_CALLBACK_GRACE", "-1"),
    ("KIE_UNKNOWN_OUTCOME_GRACE", "-0.1"),
    ("KIE_MAX_ATTEMPTS", "0"),
    ("KIE_GENERATION_RETRIES", "-1"),
    ("KIE_BACKOFF_BASE", "0"),
    ("KIE_BACKOFF_CAP", "0.001"),
    ("KIE_SWEEP_INTERVAL", "0.01"),
    ("KIE_DOWNLOAD_MAX_BYTES", "0"),
    ("KIE_WEBHOOK_MAX_BODY", "1000"),
])
def test_numbers_below_minimum(name, raw):
    err = config_error(**{name: raw})
    assert err.variable == name
    assert "at least" in str(err) and repr(raw) in str(err)


@pytest.mark.parametrize("name, raw", [
    ("KIE_MAX_IN_FLIGHT", "ten"),
    ("KIE_MAX_IN_FLIGHT", "1.5"),
    ("KIE_MAX_ATTEMPTS", "3.0"),
    ("KIE_GENERATION_RETRIES", "two"),
    ("KIE_JOB_TIMEOUT", "15m"),
    ("KIE_HTTP_TIMEOUT", "abc"),
])
def test_numbers_not_numbers(name, raw):
    err = config_error(**{name: raw})
    assert err.variable == name
    assert repr(raw) in str(err)


def test_generation_retries_default_bounds():
    assert from_env().generation_retries == 2
    assert from_env(KIE_GENERATION_RETRIES="0").generation_retries == 0
    assert from_env(KIE_GENERATION_RETRIES="10").generation_retries == 10
    err = config_error(KIE_GENERATION_RETRIES="11")
    assert err.variable == "KIE_GENERATION_RETRIES" and "at most 10" in str(err) and "11" in str(err)


def test_minimum_values_are_accepted():
    s = from_env(KIE_MAX_IN_FLIGHT="1", KIE_JOB_TIMEOUT="1", KIE_CALLBACK_GRACE="0",
                 KIE_WEBHOOK_MAX_BODY="1024", KIE_HTTP_TIMEOUT="0.1")
    assert (s.max_in_flight, s.job_timeout, s.callback_grace, s.webhook_max_body, s.http_timeout) == \
        (1, 1.0, 0.0, 1024, 0.1)


@pytest.mark.parametrize("name", ["KIE_JOB_TIMEOUT", "KIE_HTTP_TIMEOUT", "KIE_BACKOFF_CAP"])
def test_nan_is_rejected(name):
    with pytest.raises(ConfigError):
        Settings.from_env({name: "nan"})


# -- callbacks and secrets ----------------------------------------------------------------------


def test_callback_url_requires_a_webhook_secret():
    err = config_error(KIE_CALLBACK_URL="https://hooks.example.com")
    assert err.variable == "KIE_WEBHOOK_SECRET"
    assert "KIE_CALLBACK_URL" in str(err)


def test_callback_url_with_only_blank_secrets_is_refused():
    err = config_error(KIE_CALLBACK_URL="https://hooks.example.com", KIE_WEBHOOK_SECRET=" , ,")
    assert err.variable == "KIE_WEBHOOK_SECRET"


def test_comma_separated_secrets_rotate_first_is_current():
    s = from_env(KIE_CALLBACK_URL="https://hooks.example.com",
                 KIE_WEBHOOK_SECRET=f" {SECRET_A} ,{SECRET_B},, ")
    assert s.webhook_secrets == (SECRET_A, SECRET_B)
    assert s.webhook_secret == SECRET_A
    assert set(s.secrets()) == {SECRET_A, SECRET_B}


def test_secret_without_callback_url_is_kept_for_the_webhook():
    s = from_env(KIE_WEBHOOK_SECRET=SECRET_A)
    assert s.callback_url is None and s.webhook_secret == SECRET_A


# -- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, raw", [
    ("REDIS_URL", "localhost:6379"),
    ("REDIS_URL", "http://localhost:6379"),
    ("CELERY_BROKER_URL", "kafka://broker:9092"),
    ("CELERY_RESULT_BACKEND", "amqp://guest@rabbit//"),
    ("KIE_BASE_URL", "api.kie.ai"),
    ("KIE_BASE_URL", "ftp://api.kie.ai"),
])
def test_bad_urls_name_the_variable(name, raw):
    env = {name: raw}
    err = config_error(**env)
    assert err.variable == name
    assert repr(raw) in str(err)


def test_bad_callback_url():
    err = config_error(KIE_CALLBACK_URL="hooks.example.com/kie", KIE_WEBHOOK_SECRET=SECRET_A)
    assert err.variable == "KIE_CALLBACK_URL"


@pytest.mark.parametrize("name, raw", [
    ("REDIS_URL", "http://user:hunter2pass@redis.example:6379/0"),
    ("REDIS_URL", "mysql://:hunter2pass@db.example/0"),
    ("CELERY_BROKER_URL", "sqs://AKIAEXAMPLE:hunter2pass@queue.example//"),
    ("CELERY_RESULT_BACKEND", "amqp://guest:hunter2pass@rabbit:5672//"),
])
def test_bad_url_masks_the_password(name, raw):
    err = config_error(**{name: raw})
    assert err.variable == name
    assert "hunter2pass" not in str(err) and "hunter2pass" not in repr(err.args)
    assert "***" in str(err)


def test_bad_url_without_scheme_masks_the_password():
    err = config_error(REDIS_URL="user:hunter2pass@redis.example:6379/0")
    assert err.variable == "REDIS_URL"
    assert "hunter2pass" not in str(err)


def test_uppercase_scheme_is_accepted():
    assert from_env(REDIS_URL="REDIS://127.0.0.1:6379/1").redis_url == "REDIS://127.0.0.1:6379/1"


@pytest.mark.parametrize("name, raw", [
    ("KIE_KEY_PREFIX", "has space"),
    ("KIE_KEY_PREFIX", "x" * 65),
    ("KIE_KEY_PREFIX", "a/b"),
    ("KIE_QUEUE", "two words"),
    ("KIE_QUEUE", "q*"),
])
def test_bad_names(name, raw):
    err = config_error(**{name: raw})
    assert err.variable == name
    assert repr(raw) in str(err)


# -- secrets stay out of repr -------------------------------------------------------------------


def test_repr_hides_every_secret():
    s = from_env(KIE_API_KEY=API_KEY, KIE_CALLBACK_URL="https://hooks.example.com",
                 KIE_WEBHOOK_SECRET=f"{SECRET_A},{SECRET_B}", KIE_WEBHOOK_HMAC_KEY=HMAC_KEY)
    for text in (repr(s), str(s), f"{s}", f"{s!r}"):
        for secret in (API_KEY, SECRET_A, SECRET_B, HMAC_KEY):
            assert secret not in text
    # the rest is still useful in a log
    assert "hooks.example.com" in repr(s) and "RateLimit(limit=20" in repr(s)


def test_repr_hides_a_redis_password():
    s = from_env(REDIS_URL="redis://:redispass-77aa@redis.example:6379/0")
    assert "redispass-77aa" not in repr(s)


# -- the cached accessor ------------------------------------------------------------------------


def test_settings_reads_the_environment_once(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("KIE_", "CELERY_")) or key == "REDIS_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("KIE_MAX_IN_FLIGHT", "7")
    monkeypatch.setenv("KIE_RATE_LIMIT", "3/2s")
    settings.cache_clear()
    try:
        first = settings()
        assert first.max_in_flight == 7 and first.rate_limit == RateLimit(3, 2.0)
        monkeypatch.setenv("KIE_MAX_IN_FLIGHT", "9")
        assert settings() is first and settings().max_in_flight == 7
        settings.cache_clear()
        assert settings().max_in_flight == 9
    finally:
        settings.cache_clear()


def test_settings_is_frozen():
    s = from_env()
    with pytest.raises(Exception):
        s.max_in_flight = 5  # type: ignore[misc]
    assert not math.isnan(s.job_timeout)


# -- tenants and accounts -------------------------------------------------------------------------


def test_tenant_weights_caps_and_keys():
    key_acme = "sk-acme-tenant-" + "77aa66bb"
    s = from_env(KIE_API_KEY=API_KEY, KIE_TENANT_WEIGHTS="acme=3, beta=1.5", KIE_TENANT_MAX_IN_FLIGHT="acme=40,*=10",
                 KIE_API_KEY_ACME_EU=key_acme, KIE_MIN_CREDITS="50")
    assert s.tenant_weight("acme") == 3 and s.tenant_weight("beta") == 1.5 and s.tenant_weight("other") == 1
    assert s.tenant_cap("acme") == 40 and s.tenant_cap("other") == 10
    assert s.api_key_for("acme-eu") == key_acme and s.api_key_for("acme.eu") == key_acme
    assert s.api_key_for("acme") == API_KEY
    assert s.api_keys() == [API_KEY, key_acme]
    assert key_acme in s.secrets() and key_acme not in repr(s)
    assert s.min_credits == 50
    plain = from_env()
    assert plain.tenant_cap("x") is None and plain.tenant_weight("x") == 1 and plain.min_credits is None
    hash(s)


@pytest.mark.parametrize("env, variable, words", [
    ({"KIE_TENANT_WEIGHTS": "acme"}, "KIE_TENANT_WEIGHTS", "TENANT=NUMBER"),
    ({"KIE_TENANT_WEIGHTS": "acme=0"}, "KIE_TENANT_WEIGHTS", "positive"),
    ({"KIE_TENANT_WEIGHTS": "acme=x"}, "KIE_TENANT_WEIGHTS", "expected a number"),
    ({"KIE_TENANT_WEIGHTS": "*=2"}, "KIE_TENANT_WEIGHTS", "tenant must be"),
    ({"KIE_TENANT_WEIGHTS": "a=1,a=2"}, "KIE_TENANT_WEIGHTS", "twice"),
    ({"KIE_TENANT_MAX_IN_FLIGHT": "acme=2.5"}, "KIE_TENANT_MAX_IN_FLIGHT", "whole number"),
    ({"KIE_TENANT_MAX_IN_FLIGHT": "bad name=3"}, "KIE_TENANT_MAX_IN_FLIGHT", "tenant must be"),
    ({"KIE_API_KEY_acme": "sk-x-1234567890"}, "KIE_API_KEY_acme", "upper-cased"),
    ({"KIE_MIN_CREDITS": "-1"}, "KIE_MIN_CREDITS", "at least"),
])
def test_tenant_variables_are_checked(env, variable, words):
    err = config_error(**env)
    assert err.variable == variable and words in str(err)
    assert "sk-x-1234567890" not in str(err)


def test_log_format():
    assert from_env().log_format is None                         # JSON unless stderr is a terminal
    assert from_env(KIE_LOG_FORMAT="json").log_format == "json"
    assert from_env(KIE_LOG_FORMAT=" Text ").log_format == "text"
    err = config_error(KIE_LOG_FORMAT="yaml")
    assert err.variable == "KIE_LOG_FORMAT" and "expected json or text, got 'yaml'" in str(err)


def test_metrics_port():
    assert from_env().metrics_port is None
    assert from_env(KIE_METRICS_PORT="9108").metrics_port == 9108
    assert config_error(KIE_METRICS_PORT="70000").variable == "KIE_METRICS_PORT"
    assert config_error(KIE_METRICS_PORT="http").variable == "KIE_METRICS_PORT"


def test_task_events_are_opt_in():
    from worker.celery_conf import shared_conf

    off, on = shared_conf(from_env()), shared_conf(from_env(KIE_TASK_EVENTS="1"))
    assert off["worker_send_task_events"] is False and off["task_send_sent_event"] is False
    assert on["worker_send_task_events"] is True and on["task_send_sent_event"] is True
    err = config_error(KIE_TASK_EVENTS="sometimes")
    assert err.variable == "KIE_TASK_EVENTS" and "expected true or false, got 'sometimes'" in str(err)


# -- storage ------------------------------------------------------------------------------------


def test_storage_defaults_to_a_local_folder():
    s = from_env()
    assert s.storage.scheme == "file" and s.storage.path == os.path.abspath("kie-output")
    assert s.storage.url == "file://" + os.path.abspath("kie-output")
    assert s.s3_endpoint_url is None and s.storage_presign_seconds is None


@pytest.mark.parametrize("raw, path", [("file:///srv/kie%20out/", "/srv/kie out"), ("/srv/out", "/srv/out"),
                                       ("rel/out", os.path.abspath("rel/out")), ("file://localhost/srv/o", "/srv/o")])
def test_storage_url_local_forms(raw, path):
    s = from_env(KIE_STORAGE_URL=raw)
    assert s.storage.scheme == "file" and s.storage.path == path and s.storage_dir is not None


def test_storage_url_s3_and_its_options():
    s = from_env(KIE_STORAGE_URL="s3://kie-results.eu/team-a/images/", KIE_S3_ENDPOINT_URL="http://127.0.0.1:9000",
                 KIE_STORAGE_PRESIGN_SECONDS="3600", AWS_SECRET_ACCESS_KEY="aws-settings-secret-1a2b")
    assert (s.storage.scheme, s.storage.bucket, s.storage.prefix) == ("s3", "kie-results.eu", "team-a/images")
    assert s.storage.url == "s3://kie-results.eu/team-a/images" and s.storage_dir is None
    assert s.s3_endpoint_url == "http://127.0.0.1:9000" and s.storage_presign_seconds == 3600
    assert "aws-settings-secret-1a2b" in s.secrets() and "aws-settings-secret-1a2b" not in repr(s)
    assert from_env(KIE_STORAGE_URL="s3://bucket").storage.prefix == ""


def test_storage_dir_is_an_alias_and_both_must_agree():
    assert from_env(KIE_STORAGE_DIR="/srv/out").storage.url == "file:///srv/out"
    assert from_env(KIE_STORAGE_DIR="/srv/out", KIE_STORAGE_URL="file:///srv/out/").storage.path == "/srv/out"
    e = config_error(KIE_STORAGE_DIR="/srv/out", KIE_STORAGE_URL="s3://bucket/x")
    assert e.variable == "KIE_STORAGE_URL" and "KIE_STORAGE_DIR" in str(e) and "s3://bucket/x" in str(e)


@pytest.mark.parametrize("raw, words", [
    ("gs://bucket/x", "scheme 'gs'"), ("s3://Bad_Bucket/x", "'Bad_Bucket'"), ("s3://ab/x", "'ab'"),
    ("s3://bucket/a/../b", "'..'"), ("s3://bucket/a b", "segments"), ("s3://bucket/x?region=eu", "query"),
    ("file://relative/x", "absolute path"), ("s3://192.168.0.1/x", "bucket names")])
def test_bad_storage_urls_name_the_variable(raw, words):
    e = config_error(KIE_STORAGE_URL=raw)
    assert e.variable == "KIE_STORAGE_URL" and words in str(e)


def test_credentials_in_the_storage_url_are_refused_without_echoing_them():
    e = config_error(KIE_STORAGE_URL="s3://AKIAEXAMPLE:aws-url-secret-9z8y@bucket/x")
    assert e.variable == "KIE_STORAGE_URL" and "aws-url-secret-9z8y" not in str(e) and "AWS_ACCESS_KEY_ID" in str(e)


def test_presign_needs_s3_and_at_most_seven_days():
    assert config_error(KIE_STORAGE_PRESIGN_SECONDS="60").variable == "KIE_STORAGE_PRESIGN_SECONDS"
    e = config_error(KIE_STORAGE_URL="s3://bucket/x", KIE_STORAGE_PRESIGN_SECONDS="604801")
    assert e.variable == "KIE_STORAGE_PRESIGN_SECONDS" and "604800" in str(e)
    assert config_error(KIE_STORAGE_URL="s3://bucket/x", KIE_STORAGE_PRESIGN_SECONDS="soon").variable \
        == "KIE_STORAGE_PRESIGN_SECONDS"
    assert config_error(KIE_S3_ENDPOINT_URL="minio:9000").variable == "KIE_S3_ENDPOINT_URL"


# -- fault tolerance: retention, Sentinel, replica acknowledgements --------------------------------


def test_job_retention_default_and_validation():
    assert from_env().job_retention == 7 * 86400
    assert from_env(KIE_JOB_RETENTION="2").job_retention == 2.0
    for raw in ("0", "-5", "a week", "nan"):
        err = config_error(KIE_JOB_RETENTION=raw)
        assert err.variable == "KIE_JOB_RETENTION" and repr(raw) in str(err)


def test_sentinel_urls_need_a_master_name_and_parse_every_node():
    url = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380;sentinel://10.0.0.3/2"
    err = config_error(REDIS_URL=url)
    assert err.variable == "KIE_SENTINEL_MASTER" and "REDIS_URL" in str(err)
    s = from_env(REDIS_URL=url, KIE_SENTINEL_MASTER="kie")
    assert s.broker_url == s.result_backend == s.redis_url and s.sentinel_master == "kie"
    assert sentinel_nodes(url) == ([("127.0.0.1", 26379), ("127.0.0.1", 26380), ("10.0.0.3", 26379)], 2, None)
    # Celery and kombu read the database off the first node: every node carries it
    assert s.redis_url == "sentinel://127.0.0.1:26379/2;sentinel://127.0.0.1:26380/2;sentinel://10.0.0.3:26379/2"
    err = config_error(REDIS_URL="sentinel://h:1;redis://h:2", KIE_SENTINEL_MASTER="kie")
    assert err.variable == "REDIS_URL" and "sentinel://HOST:PORT" in str(err)
    err = config_error(CELERY_BROKER_URL="sentinel://h:1/x", KIE_SENTINEL_MASTER="kie")
    assert err.variable == "CELERY_BROKER_URL" and "'x'" in str(err)


def test_min_replicas():
    assert from_env().redis_min_replicas == 0
    assert from_env(KIE_REDIS_MIN_REPLICAS="1").redis_min_replicas == 1
    assert config_error(KIE_REDIS_MIN_REPLICAS="-1").variable == "KIE_REDIS_MIN_REPLICAS"
