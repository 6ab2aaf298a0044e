"""Tests of kiesim, the kie.ai simulator, over real HTTP.

One in-process simulator (a threaded werkzeug server on a free port) serves the
module; each test resets it and restores a baseline configuration through the
control API.  Callbacks go to a tiny ``http.server`` receiver in a thread.  Waiting
is done with polling loops and events under deadlines, never fixed sleeps.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.client
import io
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from PIL import Image

from kiesim import ConfigError, SimConfig, SimServer, create_app
from kiesim.ratelimit import parse_rate_limit
from sim_support import Kie, wait_until

API_KEY = "test-key"
CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
# small_images: these tests check the tiny images (short side 64); the realistic default is in
# test_kiesim_images.py
BASELINE = dataclasses.asdict(SimConfig(api_key=API_KEY, duration=0.3, callback_retry_delay=0.05,
                                        callback_timeout=2.0, small_images=True))


# ---------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def kie(url):
    return Kie(url, API_KEY)


def fetch_image(url: str) -> tuple[Image.Image, str]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image, response.headers["Content-Type"]


# ---------------------------------------------------------------------------------------------
# createTask -> recordInfo -> files


def test_create_poll_success_with_jpeg_16_9(kie):
    task_id = kie.create_ok("a cat", aspect_ratio="16:9", output_format="jpeg")
    assert len(task_id) == 32 and int(task_id, 16) >= 0
    first = kie.record(task_id)["data"]
    assert first["state"] in ("waiting", "queuing", "generating")
    assert first["resultJson"] == "" and first["failCode"] is None and first["completeTime"] is None
    data, seen = kie.states_until_done(task_id)
    assert seen[0] != "success" and seen[-1] == "success"
    assert json.loads(data["param"])["input"] == {"prompt": "a cat", "aspect_ratio": "16:9", "output_format": "jpeg"}
    assert data["model"] == "google/nano-banana" and data["costTime"] >= 250
    assert data["createTime"] <= data["completeTime"] == data["updateTime"]
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 1 and urls[0].startswith(kie.url)
    image, content_type = fetch_image(urls[0])
    assert image.format == "JPEG" and content_type == "image/jpeg"
    assert image.size[1] == 64 and abs(image.size[0] / image.size[1] - 16 / 9) < 0.02


@pytest.mark.parametrize("model, fields, fmt, ratio", [
    ("google/nano-banana", {"image_size": "9:16"}, "PNG", 9 / 16),
    ("google/nano-banana", {"image_size": "auto"}, "PNG", 1.0),
    ("google/nano-banana-edit", {"image_urls": ["https://example.com/a.png"], "output_format": "jpeg",
                                 "image_size": "4:3"}, "JPEG", 4 / 3),
    ("nano-banana-pro", {"aspect_ratio": "21:9", "resolution": "2K", "output_format": "jpg"}, "JPEG", 21 / 9),
])
def test_images_follow_model_format_and_ratio(kie, model, fields, fmt, ratio):
    kie.config(duration=0)
    task_id = kie.create_ok("x [sim:images=2]", model=model, **fields)
    data = kie.wait_done(task_id)
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 2
    for url in urls:
        image, content_type = fetch_image(url)
        assert image.format == fmt and content_type == f"image/{fmt.lower()}"
        assert min(image.size) == 64 and abs(image.size[0] / image.size[1] - ratio) < 0.03
    assert requests.get(urls[0].rsplit(".", 1)[0] + ".webp", timeout=5).status_code == 404


def test_files_are_not_served_before_success(kie):
    task_id = kie.create_ok("slow [sim:duration=5]")
    response = requests.get(f"{kie.url}/files/{task_id}/0.png", timeout=5)
    assert response.status_code == 404


def test_sparse_records_omit_pending_keys(kie):
    kie.config(sparse_records=True)
    task_id = kie.create_ok("sparse [sim:duration=5]")
    data = kie.record(task_id)["data"]
    assert data["resultJson"] == "" and not {"failCode", "failMsg", "costTime", "completeTime"} & set(data)


def test_public_url_is_used_in_result_urls(kie):
    kie.config(duration=0, public_url="https://sim.example.test/")
    data = kie.wait_done(kie.create_ok())
    assert json.loads(data["resultJson"])["resultUrls"][0].startswith("https://sim.example.test/files/")


# ---------------------------------------------------------------------------------------------
# gateway, validation, errors


def test_missing_or_wrong_key_is_body_401(kie):
    body = {"model": "google/nano-banana", "input": {"prompt": "x"}}
    for headers in ({"User-Agent": "t"}, {"User-Agent": "t", "Authorization": "Bearer nope"}):
        response = requests.post(kie.url + CREATE, json=body, headers=headers, timeout=5)
        assert response.status_code == 200 and response.json()["code"] == 401
    response = requests.get(kie.url + RECORD, params={"taskId": "x"}, headers={"User-Agent": "t"}, timeout=5)
    assert response.json()["code"] == 401
    assert kie.stats()["creates_rejected"] == {"401": 2} and kie.stats()["tasks"] == 0


def test_missing_user_agent_is_cloudflare_403(kie):
    # http.client sends no User-Agent of its own (requests/urllib3 always add one)
    host, port = kie.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    body = json.dumps({"model": "google/nano-banana", "input": {"prompt": "x"}})
    connection.request("POST", CREATE, body=body, headers={"Authorization": f"Bearer {API_KEY}",
                                                           "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 403 and response.read() == b"error code: 1010"
    connection.close()
    assert kie.stats()["creates_rejected"] == {"403": 1} and kie.stats()["tasks"] == 0


@pytest.mark.parametrize("model, fields, msg", [
    ("google/nano-banana", {"prompt": "x" * 5001}, "prompt: must be at most 5000 characters, got 5001"),
    ("google/nano-banana", {"prompt": ""}, "prompt: must not be empty"),
    ("google/nano-banana", {"prompt": "x", "output_format": "jpg"}, "output_format: must be one of png, jpeg"),
    ("google/nano-banana", {"prompt": "x", "image_size": "7:5"}, "image_size: must be one of"),
    ("google/nano-banana", {"prompt": "x", "nsfw_checker": "yes"}, "nsfw_checker: must be a boolean"),
    ("google/nano-banana-edit", {"prompt": "x", "image_urls": []}, "image_urls: must hold 1 to 10 URLs, got 0"),
    ("nano-banana-pro", {"prompt": "x" * 10001}, "prompt: must be at most 10000 characters"),
    ("nano-banana-pro", {"prompt": "x", "image_input": ["https://e.x/a"] * 9}, "image_input: must hold 0 to 8"),
    ("nano-banana-pro", {"prompt": "x", "resolution": "8K"}, "resolution: must be one of 1K, 2K, 4K"),
    ("google/nano-banana-2", {"prompt": "x"}, "The page does not exist or is not published"),
    ("google/nano-banana", {"prompt": "x [sim:frobnicate]"}, "prompt: unknown simulator directive"),
])
def test_validation_errors_are_body_422(kie, model, fields, msg):
    response = requests.post(kie.url + CREATE, json={"model": model, "input": fields}, headers=kie.headers,
                             timeout=5)
    body = response.json()
    assert response.status_code == 200 and body["code"] == 422 and body["msg"].startswith(msg), body
    assert kie.stats()["tasks"] == 0


def test_limits_at_the_edge_are_accepted(kie):
    kie.create_ok("x" * 5000)
    kie.create_ok("y" * 10000, model="nano-banana-pro", image_input=["https://e.x/a"] * 8)


def test_strict_input_rejects_unlisted_fields(kie):
    kie.create_ok("x", resolution="2K")  # ignored by default
    kie.config(strict_input=True)
    body = kie.create("x", resolution="2K").json()
    assert body == {"code": 422, "msg": "resolution: is not an input field of google/nano-banana"}


def test_error_style_http_uses_the_code_as_status(kie):
    kie.config(error_style="http")
    response = kie.create("x" * 5001)
    assert response.status_code == 422 and response.json()["code"] == 422


def test_unknown_task_record_is_null(kie):
    assert kie.record("0" * 32) == {"code": 422, "msg": "recordInfo is null", "data": None}


def test_maintenance_and_credits(kie):
    kie.config(maintenance=True)
    assert kie.create().json()["code"] == 455
    kie.config(maintenance=False, credits=6, credits_per_task=4)
    kie.create_ok()
    assert kie.create().json()["code"] == 402
    credit = requests.get(kie.url + "/api/v1/chat/credit", headers=kie.headers, timeout=5).json()
    assert credit == {"code": 200, "msg": "success", "data": 2}
    assert kie.stats()["creates_rejected"] == {"402": 1, "455": 1}


def test_download_url_and_message_variant(kie):
    response = requests.post(kie.url + "/api/v1/common/download-url", json={"url": "https://x.test/a.png"},
                             headers=kie.headers, timeout=5)
    assert response.json() == {"code": 200, "msg": "success", "data": "https://x.test/a.png"}
    kie.config(create_msg_key="message")
    body = kie.create().json()
    assert body["message"] == "success" and "msg" not in body


def test_create_delay_still_creates_the_task(kie):
    kie.config(create_delay=0.6)
    with pytest.raises(requests.Timeout):
        kie.create("timed out", timeout=0.2)
    wait_until(lambda: kie.stats()["tasks"] == 1, what="task created despite client timeout")
    assert kie.stats()["prompts"] == {"timed out": 1}


# ---------------------------------------------------------------------------------------------
# rate limiting


def test_sliding_window_rate_limit_is_never_exceeded(kie):
    kie.config(rate_limit="3/1s")
    limit, window = 3, 1.0
    accepted = rejected = 0
    end = time.monotonic() + 2.2
    while time.monotonic() < end:
        response = kie.create(f"p{accepted + rejected}")
        assert response.status_code == 200
        if response.json()["code"] == 200:
            accepted += 1
        else:
            assert response.json()["code"] == 429
            rejected += 1
        time.sleep(0.01)
    stats = kie.stats()
    times = stats["create_accept_times"]
    assert accepted == len(times) == stats["tasks"] == stats["creates_accepted"]  # rejected ones NOT queued
    assert rejected > 0 and stats["creates_rejected"]["429"] == rejected
    assert 6 <= accepted <= 9
    for t in times:
        assert sum(1 for u in times if t - window <= u <= t) <= limit


def test_default_rate_limit_is_20_per_10s(kie):
    for i in range(20):
        kie.create_ok(f"burst {i}")
    assert kie.create("one too many").json()["code"] == 429


def test_http_and_mixed_429_styles_with_retry_after(kie):
    kie.config(rate_limit="1/10s", rate_limit_style="http", retry_after=3)
    kie.create_ok()
    response = kie.create()
    assert response.status_code == 429 and response.json()["code"] == 429
    assert response.headers["Retry-After"] == "3"
    kie.config(rate_limit_style="mixed", retry_after="auto")
    statuses = {kie.create().status_code for _ in range(4)}
    assert statuses == {200, 429}
    assert 1 <= int(kie.create().headers["Retry-After"]) <= 10


# ---------------------------------------------------------------------------------------------
# callbacks


def expected_signature(key: str, task_id: str, timestamp: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
                            ).decode()


def test_success_callback_is_signed_and_shaped(kie, receiver):
    kie.config(hmac_key="whsec")
    task_id = kie.create_ok("signed", callback=receiver.url)
    record = receiver.wait_for(1)[0]
    headers = record["headers"]
    timestamp = headers["X-Webhook-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 5
    assert hmac.compare_digest(headers["X-Webhook-Signature"], expected_signature("whsec", task_id, timestamp))
    assert headers["User-Agent"].startswith("kiesim/") and headers["Content-Type"] == "application/json"
    body = record["body"]
    assert body["code"] == 200
    data = body["data"]
    assert set(data) == {"completeTime", "consumeCredits", "costTime", "createTime", "model", "param",
                         "remainedCredits", "resultJson", "state", "taskId", "updateTime"}
    assert data["taskId"] == task_id and data["state"] == "success" and data["consumeCredits"] == 4
    assert data["costTime"] == 0 and isinstance(data["costTime"], int)  # seconds (0.3 s rounds to 0)
    assert json.loads(data["param"])["callBackUrl"] == receiver.url
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert fetch_image(urls[0])[0].format == "PNG"
    assert kie.stats()["callbacks_sent"][0]["status"] == 200


def test_failure_directive_and_failure_callback(kie, receiver):
    task_id = kie.create_ok("bad [sim:fail=422:nsfw content: blocked]", callback=receiver.url)
    body = receiver.wait_for(1)[0]["body"]
    assert body["code"] == 501
    assert body["data"]["state"] == "fail" and body["data"]["consumeCredits"] == 0
    assert (body["data"]["failCode"], body["data"]["failMsg"]) == ("422", "nsfw content: blocked")
    assert body["data"]["resultJson"] == ""
    data = kie.wait_done(task_id)
    assert (data["state"], data["failCode"], data["failMsg"], data["resultJson"]) == \
        ("fail", "422", "nsfw content: blocked", "")
    plain = kie.create_ok("bad [sim:fail] [sim:duration=0]")
    assert kie.wait_done(plain)["failCode"] == "500"
    assert kie.wait_done(plain)["failMsg"] == "internal error"


def test_fail_rate_one_fails_every_task(kie):
    kie.config(fail_rate=1, duration=0)
    assert kie.wait_done(kie.create_ok())["state"] == "fail"


def test_duplicate_callbacks(kie, receiver):
    kie.config(duplicate_callbacks=2, duration=0.05)
    task_id = kie.create_ok(callback=receiver.url)
    records = receiver.wait_for(3)
    assert [r["body"]["data"]["taskId"] for r in records] == [task_id] * 3
    sent = wait_until(lambda: len(kie.stats()["callbacks_sent"]) == 3 and kie.stats()["callbacks_sent"])
    assert sorted(e["delivery"] for e in sent) == [0, 1, 2]


def test_early_callback_arrives_before_create_response(kie, receiver):
    kie.config(early_callback=True)
    response = kie.create("early", callback=receiver.url)
    received_response_at = time.time()
    assert len(receiver.records) == 1  # already there, no waiting
    assert receiver.records[0]["time"] <= received_response_at
    task_id = response.json()["data"]["taskId"]
    assert receiver.records[0]["body"]["data"]["taskId"] == task_id
    assert kie.record(task_id)["data"]["state"] == "success"


def test_variant_fields_and_cost_in_ms(kie, receiver):
    kie.config(variant_fields=True, callback_cost_ms=True, duration=0.1)
    task_id = kie.create_ok(callback=receiver.url)
    body = receiver.wait_for(1)[0]["body"]
    assert body["taskId"] == task_id and body["data"]["task_id"] == task_id
    assert "taskId" not in body["data"] and "consumeCredits" not in body["data"]
    assert body["data"]["creditsConsumed"] == 4 and body["data"]["costTime"] >= 90


def test_retries_until_receiver_answers_2xx(kie, receiver):
    receiver.statuses = [500, 503]
    kie.config(duration=0)
    kie.create_ok(callback=receiver.url)
    records = receiver.wait_for(3)
    assert [r["answered"] for r in records] == [500, 503, 200]
    sent = wait_until(lambda: len(kie.stats()["callbacks_sent"]) == 3 and kie.stats()["callbacks_sent"])
    assert [(e["attempt"], e["status"]) for e in sent] == [(1, 500), (2, 503), (3, 200)]


def test_retries_stop_after_callback_retries(kie):
    kie.config(duration=0, callback_retries=2)
    kie.create_ok(callback="http://127.0.0.1:9/closed")  # discard port: nothing listens
    sent = wait_until(lambda: len(kie.stats()["callbacks_sent"]) == 3 and kie.stats()["callbacks_sent"])
    assert all(e["status"] is None and e["error"] for e in sent)
    # the first two schedule a retry; the third is the last: the simulator records that it gives up
    assert [e["retry_at"] is not None for e in sent] == [True, True, False]
    assert kie.stats()["callbacks_pending"] == 0 and len(kie.stats()["callbacks_sent"]) == 3


def test_lost_callbacks_late_delivery_and_manual_redelivery(kie, receiver):
    kie.config(duration=0, lose_callbacks=1)
    lost = kie.create_ok("lost", callback=receiver.url)
    nocb = kie.create_ok("quiet [sim:nocallback]", callback=receiver.url)
    lost_log = wait_until(lambda: len(kie.stats()["callbacks_lost"]) == 2 and kie.stats()["callbacks_lost"])
    assert {(e["taskId"], e["reason"]) for e in lost_log} == {(lost, "lose_callbacks"), (nocb, "nocallback")}
    assert receiver.records == []
    redo = requests.post(f"{kie.url}/_sim/tasks/{lost}/callback", timeout=5).json()
    assert redo["status"] == 200 and len(receiver.records) == 1

    kie.config(lose_callbacks=0, late_callback_delay=0.4)
    started = time.time()
    kie.create_ok("late", callback=receiver.url)
    record = receiver.wait_for(2)[1]
    assert record["time"] - started >= 0.4


def test_prompt_directives_create_and_duration(kie):
    for _ in range(2):
        assert kie.create("flaky [sim:create=500*2]").json()["code"] == 500
    kie.create_ok("flaky [sim:create=500*2]")
    for code in (402, 455, 429, 422):
        assert kie.create(f"always [sim:create={code}]").json()["code"] == code
    started = time.monotonic()
    kie.wait_done(kie.create_ok("quick [sim:duration=0]"), deadline=1)
    assert time.monotonic() - started < 1
    stats = kie.stats()
    assert stats["prompts"] == {"flaky [sim:create=500*2]": 1, "quick [sim:duration=0]": 1}
    assert stats["creates_rejected"] == {"402": 1, "422": 1, "429": 1, "455": 1, "500": 2}


def test_fail_directive_with_a_count_fails_only_the_first_tasks_of_the_prompt(kie):
    prompt = "flaky gen [sim:fail=500:internal error*2] [sim:duration=0]"
    outcomes = [kie.wait_done(kie.create_ok(prompt), deadline=5) for _ in range(3)]
    assert [(o["state"], o["failCode"], o["failMsg"]) for o in outcomes[:2]] == [("fail", "500", "internal error")] * 2
    assert outcomes[2]["state"] == "success"
    # the code alone, with the count
    other = "other [sim:fail=422*1] [sim:duration=0]"
    first, second = (kie.wait_done(kie.create_ok(other), deadline=5) for _ in range(2))
    assert (first["state"], first["failCode"], first["failMsg"]) == ("fail", "422", "generation failed")
    assert second["state"] == "success"
    assert kie.create("bad [sim:fail=*2]").json()["code"] == 422


# ---------------------------------------------------------------------------------------------
# control API


def test_control_api_config_stats_tasks_and_reset(kie):
    config = kie.config(hmac_key="secret-hmac", duplicate_callbacks=1)
    assert config["api_key"] == "***" and config["hmac_key"] == "***" and config["duplicate_callbacks"] == 1
    assert "secret-hmac" not in json.dumps(config) and API_KEY not in json.dumps(config)
    bad = requests.post(kie.url + "/_sim/config", json={"no_such_knob": 1}, timeout=5)
    assert bad.status_code == 400 and bad.json()["knob"] == "no_such_knob"
    bad = requests.post(kie.url + "/_sim/config", json={"fail_rate": 2}, timeout=5)
    assert bad.status_code == 400 and "fail_rate" in bad.json()["error"]

    task_id = kie.create_ok("inspect me")
    kie.record(task_id)
    record = requests.get(f"{kie.url}/_sim/tasks/{task_id}", timeout=5).json()
    assert record["task_id"] == task_id and record["prompt"] == "inspect me" and record["state"] != "fail"
    assert requests.get(f"{kie.url}/_sim/tasks/{'f' * 32}", timeout=5).status_code == 404
    assert requests.post(f"{kie.url}/_sim/tasks/{task_id}/callback", timeout=5).status_code == 409
    stats = kie.stats()
    assert stats["creates_accepted"] == 1 and stats["record_info_calls"] == 1 and stats["tasks"] == 1
    assert stats["requests_total"] == 2 and len(stats["create_accept_times"]) == 1

    requests.post(kie.url + "/_sim/reset", timeout=5)
    stats = kie.stats()
    assert stats["tasks"] == 0 and stats["creates_accepted"] == 0 and stats["prompts"] == {}
    assert kie.record(task_id)["msg"] == "recordInfo is null"


def test_config_validation_in_python():
    with pytest.raises(ConfigError, match="fail_rate"):
        SimConfig(fail_rate=1.5)
    with pytest.raises(ConfigError, match="rate_limit"):
        SimConfig(rate_limit="lots")
    assert parse_rate_limit("20/10s") == (20, 10.0)
    assert parse_rate_limit("100/1m") == (100, 60.0)
    assert parse_rate_limit("off") is None
    app = create_app()  # the factory works without arguments and creates nothing else
    assert app.extensions["kiesim"].config.api_key == ("kiesim-key",)


def test_cli_subprocess_prints_url_and_serves(tmp_path: Path):
    port_file = tmp_path / "url"
    process = subprocess.Popen(
        [sys.executable, "-m", "kiesim", "--port", "0", "--api-key", "cli-key", "--rate-limit", "off",
         "--early-callback", "--variant-fields", "0.5", "--port-file", str(port_file), "--quiet"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("kiesim listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert port_file.read_text().strip() == url
        credit = requests.get(url + "/api/v1/chat/credit",
                              headers={"Authorization": "Bearer cli-key", "User-Agent": "t"}, timeout=5)
        assert credit.json()["code"] == 200
        config = requests.get(url + "/_sim/config", timeout=5).json()
        assert config["rate_limit"] == "off" and config["early_callback"] is True
        assert config["variant_fields"] == 0.5
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_cli_rejects_bad_flag_value():
    result = subprocess.run([sys.executable, "-m", "kiesim", "--fail-rate", "2"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], timeout=30)
    assert result.returncode == 2 and "--fail-rate" in result.stderr
