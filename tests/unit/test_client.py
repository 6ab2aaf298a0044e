"""Tests of worker.kie.client.KieClient against the real simulator over HTTP.

One in-process ``kiesim.SimServer`` (threaded werkzeug on a free port) serves the module; each test
gets it reset to a baseline configuration.  Per-request behaviour is steered with the simulator's
prompt directives (``[sim:create=CODE]``, ``[sim:fail=...]``, ``[sim:duration=...]``) and knobs.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import time

import pytest
import requests

from kiesim import SimConfig, SimServer
from worker import errors
from worker.kie.client import KieClient
from worker.version import user_agent

API_KEY = "sk-client-test-" + "0a1b2c3d4e5f6a7b"
MODEL = "google/nano-banana"
BASELINE = dataclasses.asdict(SimConfig(api_key=API_KEY, duration=0.2, rate_limit="off"))
TASK_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def server():
    with SimServer(SimConfig(**BASELINE), host="127.0.0.1", port=0) as srv:
        yield srv


@pytest.fixture
def sim(server):
    server.simulator.reset()
    yield server
    server.simulator.update_config(BASELINE)
    server.simulator.reset()


@pytest.fixture
def client(sim):
    c = KieClient(sim.url, API_KEY, timeout=5)
    yield c
    c.session.close()


def body(prompt: str, **inp) -> dict:
    return {"model": MODEL, "input": {"prompt": prompt, **inp}}


def assert_no_key(exc: BaseException):
    for text in (str(exc), repr(exc.args), repr(exc)):
        assert API_KEY not in text
        assert API_KEY[-16:] not in text


def poll_until_terminal(client, task_id, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        outcome = client.record_info(task_id)
        if outcome.terminal:
            return outcome
        assert time.monotonic() < deadline, f"task {task_id} never finished: {outcome}"
        time.sleep(0.05)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- createTask and recordInfo ----------------------------------------------------------------


def test_create_task_returns_a_32_hex_task_id(client, sim):
    task_id = client.create_task(body("a red cube"))
    assert TASK_ID.match(task_id)
    assert sim.simulator.task_record(task_id)["prompt"] == "a red cube"
    assert client.create_task(body("a red cube")) != task_id


def test_create_task_accepts_message_instead_of_msg(client, sim):
    sim.simulator.update_config({"create_msg_key": "message"})
    assert TASK_ID.match(client.create_task(body("a doc example")))


def test_record_info_pending_then_success(client, sim):
    task_id = client.create_task(body("a blue sphere [sim:duration=0.3] [sim:images=2]", output_format="jpeg"))
    first = client.record_info(task_id)
    assert first.task_id == task_id
    assert first.state in ("waiting", "queuing", "generating")
    assert not first.terminal and first.result_urls == () and first.fail_code is None

    outcome = poll_until_terminal(client, task_id)
    assert outcome.state == "success" and outcome.succeeded
    assert outcome.task_id == task_id and outcome.model == MODEL
    assert len(outcome.result_urls) == 2
    assert all(u.startswith(sim.url) and u.endswith((".jpeg", ".jpg")) for u in outcome.result_urls)
    assert outcome.complete_time is not None and outcome.create_time is not None
    assert outcome.param == body("a blue sphere [sim:duration=0.3] [sim:images=2]", output_format="jpeg")


def test_record_info_sparse_pending_records(client, sim):
    sim.simulator.update_config({"sparse_records": True})
    task_id = client.create_task(body("sparse [sim:duration=5]"))
    outcome = client.record_info(task_id)
    assert outcome.state in ("waiting", "queuing", "generating") and outcome.cost_time is None


def test_record_info_failure(client):
    task_id = client.create_task(body("a forbidden thing [sim:fail=422:nsfw content] [sim:duration=0.1]"))
    outcome = poll_until_terminal(client, task_id)
    assert outcome.state == "fail" and outcome.terminal and not outcome.succeeded
    assert str(outcome.fail_code) == "422" and outcome.fail_msg == "nsfw content"
    assert outcome.result_urls == ()


def test_record_info_unknown_task_is_not_found(client):
    with pytest.raises(errors.NotFound) as info:
        client.record_info("0" * 32)
    assert info.value.code == 404 and not info.value.retryable
    assert "null" in info.value.msg


def test_record_info_without_task_id_is_a_validation_error(client):
    with pytest.raises(errors.UpstreamValidationError) as info:
        client.record_info("")
    assert info.value.code == 422 and "taskId" in info.value.msg


def test_record_info_rate_limited(client, sim):
    sim.simulator.update_config({"status_rate_limit": "1/30s"})
    task_id = client.create_task(body("polled too often"))
    client.record_info(task_id)
    with pytest.raises(errors.RateLimited):
        client.record_info(task_id)


def test_credits(client, sim):
    sim.simulator.update_config({"credits": 60.62})
    assert client.credits() == pytest.approx(60.62)


# -- body-code errors -------------------------------------------------------------------------

ERRORS = [
    (401, errors.Unauthorized, False),
    (402, errors.InsufficientCredits, False),
    (404, errors.NotFound, False),
    (422, errors.UpstreamValidationError, False),
    (429, errors.RateLimited, True),
    (433, errors.UsageCapExceeded, False),
    (455, errors.RetryableUpstreamError, True),
    (500, errors.RetryableUpstreamError, True),
    (505, errors.FeatureDisabled, False),
]


@pytest.mark.parametrize("code, cls, retryable", ERRORS)
def test_body_code_errors_map_to_typed_errors(client, sim, code, cls, retryable):
    with pytest.raises(errors.UpstreamError) as info:
        client.create_task(body(f"refused [sim:create={code}]"))
    exc = info.value
    assert type(exc) is cls
    assert exc.code == code and exc.http_status == 200      # the verdict was in the body of an HTTP 200
    assert exc.retryable is retryable
    assert exc.msg and str(code) in str(exc)
    assert_no_key(exc)
    assert sim.simulator.stats()["tasks"] == 0


@pytest.mark.parametrize("code, cls, retryable", [e for e in ERRORS if e[0] != 429])
def test_http_status_errors_map_to_typed_errors(client, sim, code, cls, retryable):
    sim.simulator.update_config({"error_style": "http"})
    with pytest.raises(errors.UpstreamError) as info:
        client.create_task(body(f"refused [sim:create={code}]"))
    assert type(info.value) is cls
    assert info.value.code == code and info.value.http_status == code
    assert info.value.retryable is retryable


def test_http_429_with_retry_after(client, sim):
    sim.simulator.update_config({"rate_limit_style": "http", "retry_after": 3})
    with pytest.raises(errors.RateLimited) as info:
        client.create_task(body("busy [sim:create=429]"))
    assert info.value.http_status == 429 and info.value.code == 429
    assert info.value.retry_after == 3


def test_real_rate_limit_is_rate_limited(client, sim):
    sim.simulator.update_config({"rate_limit": "2/30s", "retry_after": "auto"})
    client.create_task(body("one"))
    client.create_task(body("two"))
    with pytest.raises(errors.RateLimited) as info:
        client.create_task(body("three"))
    assert info.value.http_status == 200
    assert 25 <= info.value.retry_after <= 30
    assert sim.simulator.stats()["creates_accepted"] == 2


def test_maintenance_is_retryable(client, sim):
    sim.simulator.update_config({"maintenance": True})
    with pytest.raises(errors.RetryableUpstreamError) as info:
        client.create_task(body("anything"))
    assert info.value.code == 455 and info.value.retryable


def test_wrong_key_is_unauthorized(sim):
    wrong = "sk-wrong-key-" + "ffeeddccbbaa"
    c = KieClient(sim.url, wrong, timeout=5)
    for call in (lambda: c.create_task(body("x")), lambda: c.record_info("0" * 32), c.credits):
        with pytest.raises(errors.Unauthorized) as info:
            call()
        assert wrong not in str(info.value) and wrong not in repr(info.value.args)


def test_upstream_validation_error_message_is_redacted(client):
    # the simulator echoes a malformed directive in its 422 message: here that directive holds the key
    with pytest.raises(errors.UpstreamValidationError) as info:
        client.create_task(body(f"leak [sim:duration={API_KEY}]"))
    assert "***" in info.value.msg and "duration" in info.value.msg
    assert_no_key(info.value)


# -- transport --------------------------------------------------------------------------------


def test_connection_refused_was_not_sent():
    c = KieClient(f"http://127.0.0.1:{closed_port()}", API_KEY, timeout=2)
    with pytest.raises(errors.TransportError) as info:
        c.create_task(body("nobody home"))
    exc = info.value
    assert exc.sent is False and exc.retryable and exc.code is None
    assert "not sent" in str(exc)
    assert_no_key(exc)


def test_read_timeout_may_have_been_sent(sim):
    sim.simulator.update_config({"create_delay": 2})
    c = KieClient(sim.url, API_KEY, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(errors.TransportError) as info:
        c.create_task(body("slow answer"))
    assert time.monotonic() - t0 < 1.8
    exc = info.value
    assert exc.sent is True and exc.retryable
    assert "outcome unknown" in str(exc)
    assert_no_key(exc)
    # and indeed the (billed) task exists upstream
    assert sim.simulator.stats()["creates_accepted"] == 1


BROKEN_KEY = "sk-client-part1\npart2-" + "77665544"


def test_key_with_a_control_character_is_not_leaked():
    c = KieClient(f"http://127.0.0.1:{closed_port()}", BROKEN_KEY, timeout=2)
    with pytest.raises(errors.UpstreamError) as info:
        c.create_task(body("x"))
    for part in BROKEN_KEY.split("\n"):
        assert part not in str(info.value)


def test_request_refused_before_sending_is_not_sent():
    c = KieClient(f"http://127.0.0.1:{closed_port()}", BROKEN_KEY, timeout=2)
    with pytest.raises(errors.TransportError) as info:
        c.create_task(body("x"))
    assert info.value.sent is False


def test_transport_error_pickles_with_sent():
    import pickle

    exc = pickle.loads(pickle.dumps(errors.TransportError("boom", True)))
    assert exc.sent is True and exc.msg == "boom"


# -- headers ----------------------------------------------------------------------------------


def test_user_agent_is_sent(sim):
    from urllib3.util import SKIP_HEADER

    session = requests.Session()
    # the simulator's gateway refuses a request without a User-Agent (as kie.ai's front did) ...
    raw = session.post(sim.url + "/api/v1/jobs/createTask", json=body("raw"),
                       headers={"Authorization": f"Bearer {API_KEY}", "User-Agent": SKIP_HEADER}, timeout=5)
    assert raw.status_code == 403 and "1010" in raw.text
    # ... and the client gets through on the same session, sending its own agent and the bearer key
    sent = []
    session.hooks["response"].append(lambda response, **_: sent.append(response.request.headers))
    c = KieClient(sim.url, API_KEY, timeout=5, session=session)
    assert TASK_ID.match(c.create_task(body("with agent")))
    assert sent and sent[-1]["User-Agent"] == user_agent()
    assert sent[-1]["Authorization"] == f"Bearer {API_KEY}"
    assert user_agent().startswith("kie-queue/")


def test_repr_hides_the_key(client):
    assert API_KEY not in repr(client)
