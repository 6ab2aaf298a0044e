"""Hostile and broken callbacks against the real webhook (gunicorn, via the harness), over real HTTP.

Part 1 - the matrix.  A deployment with NO worker and no beat, so a ``kie.complete`` sent by the
webhook would stay in the broker list and be counted.  Jobs are created directly through
``worker.store.jobstore.JobStore`` in known states (accepted, submitted, succeeded, failed, or absent).
For every case: the expected HTTP status, a JSON answer without any secret, every Redis key of the
deployment (except the metrics hash, which counts rejections on purpose) byte-for-byte unchanged,
and the deployment's broker queue unchanged.  Decision on the ``callbacks`` delivery counter: it
only moves for a delivery that is *recorded* (202); every case of the matrix must leave the job
hash entirely unchanged, counter included - a redelivery of an already recorded outcome is answered
200 without touching the record (see ``test_first_delivery_recorded_then_redelivery_changes_nothing``).

Part 2 - verify, then trust.  A deployment with a worker, beat, the simulator and a user's worker:
a callback with a valid token and a valid signature but a forged body must not decide what the
user's chain receives; the worker confirms with ``recordInfo``.

Part 3 - secrets: every log file the harness wrote, and every answer, holds no configured secret
and no job token.
"""

from __future__ import annotations

import dataclasses
import json
import secrets as pysecrets
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import pytest
import requests

from harness import API_KEY, HMAC_KEY, SECRETS, WEBHOOK_SECRET, unique
from webhook.verify import signature_for
from worker.store.jobstore import JobStore
from worker.store.metrics import Metrics
from worker.kie.schemas import parse_callback
from worker.cli.stack import wait_for
from worker.tokens import job_token

MAX_BODY = 64 * 1024
TERMINAL_BODY = {"status": "ignored"}


# =========================================================================== helpers


def new_id(tag: str) -> str:
    return f"{tag}-{pysecrets.token_hex(6)}"


def new_task() -> str:
    return pysecrets.token_hex(16)


def success_body(task_id: str, urls=("https://tempfile.example/real.png",), **data) -> dict:
    return {"code": 200, "msg": "Playground task completed successfully.",
            "data": {"taskId": task_id, "model": "google/nano-banana", "state": "success",
                     "resultJson": json.dumps({"resultUrls": list(urls)}), "consumeCredits": 4,
                     "remainedCredits": 1000, "costTime": 8, "createTime": 1717000000000,
                     "completeTime": 1717000008000, "updateTime": 1717000008000,
                     "param": json.dumps({"model": "google/nano-banana", "input": {"prompt": "a cat"}}),
                     **data}}


def fail_body(task_id: str, **data) -> dict:
    return {"code": 501, "msg": "Playground task failed.",
            "data": {"taskId": task_id, "state": "fail", "failCode": "500", "failMsg": "internal error",
                     "consumeCredits": 0, **data}}


def sig_headers(task_id: str, *, ts: int | str | None = None, key: str = HMAC_KEY) -> dict:
    ts = str(int(time.time())) if ts is None else str(ts)
    return {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": signature_for(task_id, ts, key)}


@dataclasses.dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclasses.dataclass
class Req:
    """One callback request.  ``token=None`` leaves the query parameter out; ``query`` overrides it all."""

    job_id: str
    token: str | None
    headers: dict
    body: bytes
    method: str = "POST"
    query: str | None = None
    raw: Callable[["Req", str], Answer] | None = None   # socket-level sender for lying framing

    def path(self) -> str:
        path = f"/kie/callback/{quote(self.job_id, safe='')}"
        if self.query is not None:
            return f"{path}?{self.query}" if self.query else path
        return f"{path}?token={quote(self.token, safe='')}" if self.token is not None else path

    def send(self, base: str) -> Answer:
        if self.raw is not None:
            return self.raw(self, base)
        r = requests.request(self.method, base + self.path(), data=self.body, headers=self.headers, timeout=30)
        return Answer(r.status_code, r.headers.get("Content-Type", ""), r.content)


@dataclasses.dataclass
class Ctx:
    """The job a case targets (``job_id``, its task and token) and a second, existing job (``other_*``)."""

    job_id: str
    task_id: str
    other_job_id: str
    other_task_id: str

    @property
    def token(self) -> str:
        return job_token(self.job_id, WEBHOOK_SECRET)

    @property
    def other_token(self) -> str:
        return job_token(self.other_job_id, WEBHOOK_SECRET)

    def req(self, body: Any = None, *, sign: str | None = None, ts=None, key: str = HMAC_KEY, headers=None,
            extra_headers=None, content_type: str | None = "application/json", token: Any = "valid",
            job_id: str | None = None, **kw) -> Req:
        """A request; by default a valid, signed success callback for the job's task."""
        if body is None:
            body = success_body(self.task_id)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if headers is None:
            headers = sig_headers(sign or self.task_id, ts=ts, key=key)
            if content_type is not None:
                headers["Content-Type"] = content_type
        headers.update(extra_headers or {})
        return Req(job_id=job_id or self.job_id, token=self.token if token == "valid" else token,
                   headers=headers, body=raw, **kw)


# -- socket-level senders (requests cannot lie about framing) ----------------------------------------------


def _read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Answer(status, headers.get("content-type", ""), rest[:length])


def _head(req: Req, base: str, framing: str) -> bytes:
    host = urlsplit(base).netloc
    lines = [f"{req.method} {req.path()} HTTP/1.1", f"Host: {host}", framing, "Connection: close",
             *(f"{k}: {v}" for k, v in req.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def lying_length(claimed: int, sent: int = 1024) -> Callable[[Req, str], Answer]:
    """Announce ``claimed`` bytes, send only ``sent``, and read the answer before sending any more:
    an answer at all proves the server did not wait to read the body."""
    def send(req: Req, base: str) -> Answer:
        u = urlsplit(base)
        with socket.create_connection((u.hostname, u.port), timeout=15) as sock:
            sock.sendall(_head(req, base, f"Content-Length: {claimed}") + req.body[:sent])
            return _read_answer(sock)
    return send


def chunked(chunk_size: int = 4096) -> Callable[[Req, str], Answer]:
    """Send the body with ``Transfer-Encoding: chunked`` (no Content-Length at all)."""
    def send(req: Req, base: str) -> Answer:
        u = urlsplit(base)
        with socket.create_connection((u.hostname, u.port), timeout=15) as sock:
            payload = bytearray(_head(req, base, "Transfer-Encoding: chunked"))
            for i in range(0, len(req.body), chunk_size):
                part = req.body[i:i + chunk_size]
                payload += f"{len(part):x}\r\n".encode() + part + b"\r\n"
            payload += b"0\r\n\r\n"
            try:
                sock.sendall(bytes(payload))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer 413 and close before the whole body is in
            return _read_answer(sock)
    return send


# -- what "nothing changed" means ---------------------------------------------------------------------------


def redis_state(dep: Deployment) -> dict:
    """Every key of the deployment with its type and full value, except the metrics hash."""
    r, out = dep.redis, {}
    for key in sorted(r.scan_iter(f"{dep.prefix}:*", count=1000)):
        if key == f"{dep.prefix}:metrics".encode():
            continue
        kind = r.type(key)
        value = {b"hash": lambda: r.hgetall(key), b"zset": lambda: r.zrange(key, 0, -1, withscores=True),
                 b"set": lambda: sorted(r.smembers(key)), b"list": lambda: r.lrange(key, 0, -1),
                 b"string": lambda: r.get(key)}[kind]()
        out[key] = (kind, value)
    return out


def broker_messages(dep: Deployment) -> int:
    """Messages waiting in the deployment's queue (kombu's Redis transport: a list named after the queue,
    plus one list per priority step)."""
    total = dep.redis.llen(dep.queue)
    for key in dep.redis.scan_iter(f"{dep.queue}*"):
        if key != dep.queue.encode() and dep.redis.type(key) == b"list":
            total += dep.redis.llen(key)
    return total


def assert_no_secret(text: str, *extra: str) -> None:
    for s in (*SECRETS, *extra):
        assert s not in text, "a secret or job token appears in an answer"


def assert_json_answer(ans: Answer) -> dict:
    assert ans.content_type.split(";")[0].strip() == "application/json", ans.content_type
    body = ans.json()
    assert isinstance(body, dict)
    if ans.status >= 400:
        assert isinstance(body.get("error"), str) and body["error"]
    return body


# =========================================================================== part 1: the matrix


@pytest.fixture(scope="module")
def quiet(deploy):
    """Simulator + gunicorn webhook only: nothing consumes the queue, nothing sweeps."""
    with deploy("hostile", callbacks=True, hmac=True, start=dict(workers=0, beat=False, user_worker=False)) as d:
        yield d


@pytest.fixture(scope="module")
def store(quiet):
    return JobStore(quiet.redis, quiet.prefix)


def make_job(store: JobStore, state: str, job_id: str, task_id: str) -> None:
    """A job record in ``state`` (``absent`` = none), made by the job store's own transitions."""
    if state == "absent":
        return
    store.accept(job_id, model="google/nano-banana", input={"prompt": "a hostile test"}, timeout=900,
                 waiter_id=uuid.uuid4().hex, waiter={"chain": []}, first_claim_ms=3_600_000)
    if state == "accepted":
        return
    assert store.record_task(job_id, task_id, first_check_ms=3_600_000, timeout_ms=900_000, source="create") \
        == "recorded"
    if state == "recorded":   # submitted, with this exact success callback already recorded
        store.record_callback(job_id, parse_callback(success_body(task_id)).to_dict())
        return
    if state in ("succeeded", "failed"):
        outcome = parse_callback(success_body(task_id) if state == "succeeded" else fail_body(task_id)).to_dict()
        assert store.finish(job_id, state, outcome)
    else:
        assert state == "submitted", state


@dataclasses.dataclass
class Case:
    id: str
    target: str          # the job's state: submitted, accepted, recorded, succeeded, failed, absent
    status: int
    build: Callable[[Ctx], Req]

    def __repr__(self):
        return self.id


def C(id: str, target: str, status: int, build: Callable[[Ctx], Req]) -> Any:
    return pytest.param(Case(id, target, status, build), id=id)


def _body_with(task_id: str, **data):
    b = success_body(task_id)
    b["data"].update(data)
    return b


def _deep_valid(depth: int) -> bytes:
    return b'{"code":200,"data":' + b"[" * depth + b"]" * depth + b"}"


CASES = [
    # ---- forged: the per-job token -------------------------------------------------------------------
    C("no-token", "submitted", 401, lambda c: c.req(token=None)),
    C("empty-token", "submitted", 401, lambda c: c.req(token="")),
    C("random-token", "submitted", 401, lambda c: c.req(token=pysecrets.token_hex(32))),
    C("token-of-other-job", "submitted", 401, lambda c: c.req(token=c.other_token)),
    C("token-under-wrong-secret", "submitted", 401, lambda c: c.req(token=job_token(c.job_id, "guessed-secret"))),
    C("token-uppercased", "submitted", 401, lambda c: c.req(token=c.token.upper())),
    C("token-truncated", "submitted", 401, lambda c: c.req(token=c.token[:-1])),
    C("token-non-ascii", "submitted", 401, lambda c: c.req(token="é" * 64)),
    C("token-rtl-emoji", "submitted", 401, lambda c: c.req(token="\u202e😀" + c.token[2:])),
    C("token-twice-bad-first", "submitted", 401, lambda c: c.req(query=f"token=bad&token={c.token}")),
    C("token-in-header-not-query", "submitted", 401,
      lambda c: c.req(token=None, extra_headers={"X-Token": c.token, "Authorization": f"Bearer {c.token}"})),
    C("bad-token-unknown-job", "absent", 401, lambda c: c.req(token=pysecrets.token_hex(32))),
    C("bad-token-finished-job", "succeeded", 401, lambda c: c.req(token=c.other_token)),
    # ---- replayed / duplicate / out of order (the job is finished: 200, nothing changes) ---------------
    C("replay-success-after-success", "succeeded", 200, lambda c: c.req()),
    C("replay-fail-after-fail", "failed", 200, lambda c: c.req(fail_body(c.task_id))),
    C("out-of-order-fail-after-success", "succeeded", 200, lambda c: c.req(fail_body(c.task_id))),
    C("out-of-order-success-after-fail", "failed", 200, lambda c: c.req()),
    C("replay-forged-urls-after-success", "succeeded", 200,
      lambda c: c.req(success_body(c.task_id, urls=["https://evil.example/x.png"]))),
    C("duplicate-delivery-while-pending", "recorded", 200, lambda c: c.req()),
    C("duplicate-delivery-variant-form", "recorded", 200,
      lambda c: c.req({**success_body(c.task_id), "taskId": c.task_id})),
    # ---- kie.ai's signature headers ---------------------------------------------------------------------
    C("no-signature-headers", "submitted", 401, lambda c: c.req(headers={"Content-Type": "application/json"})),
    C("timestamp-only", "submitted", 401,
      lambda c: c.req(headers={"Content-Type": "application/json", "X-Webhook-Timestamp": str(int(time.time()))})),
    C("signature-only", "submitted", 401,
      lambda c: c.req(headers={"Content-Type": "application/json",
                               "X-Webhook-Signature": sig_headers(c.task_id)["X-Webhook-Signature"]})),
    C("garbage-signature", "submitted", 401,
      lambda c: c.req(extra_headers={"X-Webhook-Signature": "not-a-signature!!"})),
    C("hex-signature", "submitted", 401, lambda c: c.req(extra_headers={"X-Webhook-Signature": __import__(
        "hmac").new(HMAC_KEY.encode(), f"{c.task_id}.{int(time.time())}".encode(), "sha256").hexdigest(),
        "X-Webhook-Timestamp": str(int(time.time()))})),
    C("signature-over-other-task", "submitted", 401, lambda c: c.req(sign=c.other_task_id)),
    C("signature-wrong-key", "submitted", 401, lambda c: c.req(key="not-the-hmac-key")),
    C("signature-for-other-timestamp", "submitted", 401, lambda c: c.req(
        extra_headers={"X-Webhook-Timestamp": str(int(time.time()) - 1),
                       "X-Webhook-Signature": sig_headers(c.task_id)["X-Webhook-Signature"]})),
    C("stale-timestamp", "submitted", 401, lambda c: c.req(ts=int(time.time()) - 600)),
    C("future-timestamp", "submitted", 401, lambda c: c.req(ts=int(time.time()) + 600)),
    C("timestamp-in-milliseconds", "submitted", 401, lambda c: c.req(ts=int(time.time() * 1000))),
    C("timestamp-not-integer", "submitted", 401, lambda c: c.req(ts=f"{time.time():.3f}")),
    C("timestamp-400-digits", "submitted", 401, lambda c: c.req(ts="1" + "0" * 400)),
    C("timestamp-negative", "submitted", 401, lambda c: c.req(ts=-int(time.time()))),
    C("stale-replay-of-finished-job", "succeeded", 401, lambda c: c.req(ts=int(time.time()) - 3600)),
    # ---- size ---------------------------------------------------------------------------------------------
    C("content-length-10MB-not-sent", "submitted", 413, lambda c: c.req(raw=lying_length(10 * 1024 * 1024))),
    C("content-length-cap-plus-one-not-sent", "submitted", 413, lambda c: c.req(raw=lying_length(MAX_BODY + 1))),
    C("body-over-cap", "submitted", 413,
      lambda c: c.req(_body_with(c.task_id, failMsg="x" * (MAX_BODY + 10)))),
    C("chunked-over-cap", "submitted", 413,
      lambda c: c.req(_body_with(c.task_id, failMsg="x" * (MAX_BODY + 10)), raw=chunked())),
    C("oversized-with-bad-token", "submitted", 413,
      lambda c: c.req(token="bad", raw=lying_length(10 * 1024 * 1024))),
    # ---- content type ---------------------------------------------------------------------------------------
    C("text-plain", "submitted", 415, lambda c: c.req(content_type="text/plain")),
    C("form-urlencoded", "submitted", 415,
      lambda c: c.req(b"code=200&taskId=x", content_type="application/x-www-form-urlencoded")),
    C("multipart", "submitted", 415, lambda c: c.req(content_type="multipart/form-data; boundary=x")),
    C("no-content-type", "submitted", 415, lambda c: c.req(content_type=None)),
    C("json-lookalike-type", "submitted", 415, lambda c: c.req(content_type="application/jsonp")),
    # ---- malformed JSON -------------------------------------------------------------------------------------
    C("truncated-json", "submitted", 400, lambda c: c.req(json.dumps(success_body(c.task_id)).encode()[:-7])),
    C("empty-body", "submitted", 400, lambda c: c.req(b"")),
    C("nan-literal", "submitted", 400,
      lambda c: c.req(json.dumps(success_body(c.task_id)).replace('"consumeCredits": 4',
                                                                   '"consumeCredits": NaN').encode())),
    C("infinity-literal", "submitted", 400,
      lambda c: c.req(f'{{"code": Infinity, "data": {{"taskId": "{c.task_id}", "state": "fail"}}}}'.encode())),
    C("duplicate-keys", "submitted", 400,
      lambda c: c.req(f'{{"code":200,"data":{{"taskId":"{c.other_task_id}","taskId":"{c.task_id}",'
                      f'"state":"fail"}}}}'.encode())),
    C("deep-nesting-10000-open", "submitted", 400, lambda c: c.req(b"[" * 10000)),
    C("deep-nesting-10000-closed", "submitted", 400, lambda c: c.req(_deep_valid(10000))),
    C("invalid-utf8", "submitted", 400, lambda c: c.req(b'{"code":200,"msg":"\xff\xfe","data":{}}')),
    C("int-over-4300-digits", "submitted", 400,
      lambda c: c.req(b'{"code":200,"data":{"consumeCredits":' + b"9" * 5000 + b"}}")),
    C("utf8-bom", "submitted", 400, lambda c: c.req(b"\xef\xbb\xbf" + json.dumps(success_body(c.task_id)).encode())),
    C("utf16-body", "submitted", 400, lambda c: c.req(json.dumps(success_body(c.task_id)).encode("utf-16"))),
    # ---- JSON that is not an object ---------------------------------------------------------------------------
    C("json-list", "submitted", 422, lambda c: c.req([success_body(c.task_id)])),
    C("json-string", "submitted", 422, lambda c: c.req(json.dumps(json.dumps(success_body(c.task_id))).encode())),
    C("json-number", "submitted", 422, lambda c: c.req(b"200")),
    C("json-null", "submitted", 422, lambda c: c.req(b"null")),
    C("json-true", "submitted", 422, lambda c: c.req(b"true")),
    C("json-empty-object", "submitted", 422, lambda c: c.req({})),
    # ---- wrong types and values ----------------------------------------------------------------------------------
    C("taskId-number", "submitted", 422, lambda c: c.req(_body_with(123456))),
    C("taskId-list", "submitted", 422, lambda c: c.req(_body_with([c.task_id]))),
    C("taskId-empty", "submitted", 422, lambda c: c.req(_body_with(""))),
    C("taskId-with-nul", "submitted", 422, lambda c: c.req(_body_with(c.task_id + "\x00"), sign=c.task_id + "\x00")),
    C("taskId-lone-surrogate", "submitted", 422,
      lambda c: c.req(json.dumps(success_body("\ud800" + c.task_id)).encode())),
    C("taskId-and-task_id-disagree", "submitted", 422,
      lambda c: c.req({**success_body(c.task_id), "task_id": c.other_task_id})),
    C("state-unknown", "submitted", 422, lambda c: c.req(_body_with(c.task_id, state="done"))),
    C("state-missing-code-200", "submitted", 422,
      lambda c: c.req({"code": 200, "data": {"taskId": c.task_id}})),
    C("state-number", "submitted", 422, lambda c: c.req(_body_with(c.task_id, state=1))),
    C("code-501-with-success", "submitted", 422, lambda c: c.req({**success_body(c.task_id), "code": 501})),
    C("data-not-object", "submitted", 422, lambda c: c.req({"code": 200, "data": "success"})),
    C("resultJson-number", "submitted", 422, lambda c: c.req(_body_with(c.task_id, resultJson=42))),
    C("resultJson-list", "submitted", 422,
      lambda c: c.req(_body_with(c.task_id, resultJson=["https://evil.example/x.png"]))),
    C("resultJson-nested-string-unparsable", "submitted", 422,
      lambda c: c.req(_body_with(c.task_id, resultJson='{"resultUrls": ['))),
    C("resultJson-double-encoded", "submitted", 422,
      lambda c: c.req(_body_with(c.task_id, resultJson=json.dumps(json.dumps({"resultUrls": ["https://a/b"]}))))),
    C("resultJson-deeply-nested-string", "submitted", 422,
      lambda c: c.req(_body_with(c.task_id, resultJson='{"resultUrls":' + "[" * 5000 + "]" * 5000 + "}"))),
    C("resultUrls-not-a-list", "submitted", 422,
      lambda c: c.req(_body_with(c.task_id, resultJson=json.dumps({"resultUrls": "https://a.example/x.png"})))),
    C("resultUrls-empty", "submitted", 422,
      lambda c: c.req(_body_with(c.task_id, resultJson=json.dumps({"resultUrls": []})))),
    C("resultUrls-javascript", "submitted", 422,
      lambda c: c.req(success_body(c.task_id, urls=["javascript:alert(1)"]))),
    C("resultUrls-file", "submitted", 422, lambda c: c.req(success_body(c.task_id, urls=["file:///etc/passwd"]))),
    C("resultUrls-ftp", "submitted", 422, lambda c: c.req(success_body(c.task_id, urls=["ftp://a.example/x.png"]))),
    C("resultUrls-number-items", "submitted", 422, lambda c: c.req(success_body(c.task_id, urls=[1, 2]))),
    C("resultUrls-101", "submitted", 422,
      lambda c: c.req(success_body(c.task_id, urls=[f"https://a.example/{i}.png" for i in range(101)]))),
    # ---- huge numbers -------------------------------------------------------------------------------------------
    C("code-10e400-int", "submitted", 422, lambda c: c.req({**success_body(c.task_id), "code": 10 ** 400})),
    C("code-1e400-float", "submitted", 422,
      lambda c: c.req(json.dumps(success_body(c.task_id)).replace('"code": 200', '"code": 1e400').encode())),
    C("taskId-1e400", "submitted", 422,
      lambda c: c.req(b'{"code":200,"data":{"taskId":1e400,"state":"fail"}}')),
    C("huge-credits-finished-job", "succeeded", 200,
      lambda c: c.req(json.dumps(_body_with(c.task_id, consumeCredits=10 ** 400, remainedCredits=-10 ** 400))
                      .replace('"costTime": 8', '"costTime": 1e400').encode())),
    C("huge-credits-wrong-task", "submitted", 409,
      lambda c: c.req(_body_with(c.other_task_id, consumeCredits=10 ** 400), sign=c.other_task_id)),
    # ---- unicode ----------------------------------------------------------------------------------------------------
    C("unicode-failmsg-finished", "succeeded", 200,
      lambda c: c.req(fail_body(c.task_id, failMsg="\u202eevil\u202c 😀 \x00 nul \u0000 \ufeff"))),
    C("unicode-prompt-param-unknown-job", "absent", 404,
      lambda c: c.req(_body_with(c.task_id, param=json.dumps({"input": {"prompt": "\u202e😀\x00\u200d"}})))),
    C("unicode-urls-wrong-task", "submitted", 409,
      lambda c: c.req(success_body(c.other_task_id, urls=["https://xn--ls8h.example/\u202e😀.png"]),
                      sign=c.other_task_id)),
    C("unicode-rtl-taskId", "submitted", 409,
      lambda c: c.req(_body_with("\u202e" + c.task_id), sign="\u202e" + c.task_id)),
    C("unicode-job-id-unknown", "absent", 404,
      lambda c: c.req(job_id="jöb-\u202e😀-" + c.job_id, token=job_token("jöb-\u202e😀-" + c.job_id, WEBHOOK_SECRET))),
    # ---- wrong job ------------------------------------------------------------------------------------------------------
    C("unknown-job-valid-token", "absent", 404, lambda c: c.req()),
    C("unknown-job-fail-callback", "absent", 404, lambda c: c.req(fail_body(c.task_id))),
    C("unknown-job-bad-signature", "absent", 401, lambda c: c.req(key="wrong")),
    C("very-long-unknown-job-id", "absent", 404,
      lambda c: c.req(job_id="j" * 2000, token=job_token("j" * 2000, WEBHOOK_SECRET))),
    # ---- wrong task --------------------------------------------------------------------------------------------------------
    C("task-not-the-jobs", "submitted", 409, lambda c: (lambda t: c.req(success_body(t), sign=t))(new_task())),
    C("task-of-other-job", "submitted", 409,
      lambda c: c.req(success_body(c.other_task_id), sign=c.other_task_id)),
    C("task-of-other-job-fail", "submitted", 409, lambda c: c.req(fail_body(c.other_task_id), sign=c.other_task_id)),
    C("task_id-variant-not-the-jobs", "submitted", 409,
      lambda c: c.req({"code": 200, "taskId": c.other_task_id,
                       "data": {"task_id": c.other_task_id, "state": "success",
                                "resultJson": {"resultUrls": ["https://evil.example/x.png"]}}},
                      sign=c.other_task_id)),
    C("task_id-variant-finished-job", "succeeded", 200,
      lambda c: c.req({"code": 200, "taskId": c.task_id,
                       "data": {"task_id": c.task_id, "state": "success", "creditsConsumed": 4,
                                "resultJson": json.dumps({"resultUrls": ["https://evil.example/x.png"]})}})),
    C("task-prefix-of-jobs", "submitted", 409, lambda c: c.req(success_body(c.task_id[:-1]), sign=c.task_id[:-1])),
    # ---- methods ---------------------------------------------------------------------------------------------------------------
    C("get-on-callback", "submitted", 405, lambda c: c.req(method="GET")),
    C("put-on-callback", "submitted", 405, lambda c: c.req(method="PUT")),
    C("delete-on-callback", "submitted", 405, lambda c: c.req(method="DELETE")),
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_callback_changes_nothing(quiet, store, case: Case):
    ctx = Ctx(job_id=new_id("hostile"), task_id=new_task(), other_job_id=new_id("other"), other_task_id=new_task())
    make_job(store, case.target, ctx.job_id, ctx.task_id)
    make_job(store, "submitted", ctx.other_job_id, ctx.other_task_id)
    req = case.build(ctx)
    before, queued = redis_state(quiet), broker_messages(quiet)

    ans = req.send(quiet.web_url)

    assert ans.status == case.status, (case.id, ans.status, ans.body[:300])
    body = assert_json_answer(ans)
    if case.status == 200:
        assert body["status"] == "ignored"
    assert_no_secret(ans.body.decode("utf-8", "replace"), ctx.token, ctx.other_token)
    assert redis_state(quiet) == before, f"{case.id}: the deployment's Redis state changed"
    assert broker_messages(quiet) == queued, f"{case.id}: a task was sent to the broker"


def test_matrix_is_big_enough():
    assert len(CASES) >= 40
    assert len({p.values[0].id for p in CASES}) == len(CASES)


def test_bad_token_answer_is_the_same_whether_or_not_the_job_exists(quiet, store):
    existing, task = new_id("exists"), new_task()
    make_job(store, "submitted", existing, task)
    answers = []
    for job_id in (existing, new_id("nosuch")):
        ctx = Ctx(job_id=job_id, task_id=task, other_job_id=job_id, other_task_id=task)
        ans = ctx.req(token=pysecrets.token_hex(32)).send(quiet.web_url)
        answers.append((ans.status, ans.json()))
    assert answers[0] == answers[1] and answers[0][0] == 401


def test_first_delivery_recorded_then_redelivery_changes_nothing(quiet, store):
    """The positive control that makes the matrix's "nothing sent" observable: a valid delivery for a
    pending job is recorded (job hash changes: ``callback``, ``callback_at``, ``callbacks`` = 1) and
    sends exactly one ``kie.complete``; the same delivery again changes nothing and sends nothing."""
    ctx = Ctx(job_id=new_id("control"), task_id=new_task(), other_job_id="-", other_task_id="-")
    make_job(store, "submitted", ctx.job_id, ctx.task_id)
    queued = broker_messages(quiet)

    first = ctx.req().send(quiet.web_url)
    assert first.status == 202 and first.json() == {"status": "accepted", "deliveries": 1}
    assert broker_messages(quiet) == queued + 1
    job = store.get(ctx.job_id)
    assert job["state"] == "submitted" and job["callbacks"] == "1"
    assert json.loads(job["callback"])["result_urls"] == ["https://tempfile.example/real.png"]

    before = redis_state(quiet)
    again = ctx.req().send(quiet.web_url)       # a fresh timestamp and signature: a kie.ai retry
    assert again.status == 200 and again.json()["status"] == "ignored"
    assert redis_state(quiet) == before and broker_messages(quiet) == queued + 1


def test_callback_while_create_in_flight_adopts_the_task_once(quiet, store):
    """A signed callback for a job whose create has not returned yet is recorded (the worker adopts
    the taskId after confirming it); it is not a hostile case, but it must also be recorded once."""
    ctx = Ctx(job_id=new_id("early"), task_id=new_task(), other_job_id="-", other_task_id="-")
    make_job(store, "accepted", ctx.job_id, ctx.task_id)
    queued = broker_messages(quiet)
    assert ctx.req().send(quiet.web_url).status == 202
    assert ctx.req().send(quiet.web_url).status == 200
    assert broker_messages(quiet) == queued + 1
    assert store.get(ctx.job_id)["callbacks"] == "1"


def test_healthz_metrics_and_unknown_routes_answer_json(quiet):
    r = requests.get(quiet.web_url + "/healthz", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    for path in ("/nope", "/kie/callback/", "/kie/callback/a/b"):
        r = requests.post(quiet.web_url + path, json={}, timeout=5)
        assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    m = requests.get(quiet.web_url + "/metrics", timeout=5)
    assert m.status_code == 200 and m.headers["Content-Type"].startswith("text/plain")
    assert 'kie_callbacks_total{outcome="unauthorized"}' in m.text
    assert_no_secret(m.text)
    spec = requests.get(quiet.web_url + "/openapi.yaml", timeout=5)
    assert spec.status_code == 200 and "/kie/callback/{job_id}" in spec.text


# =========================================================================== part 2: verify, then trust


@pytest.fixture(scope="module")
def live(deploy):
    with deploy("forged", callbacks=True, hmac=True, start=dict(workers=1, concurrency=2)) as d:
        yield d


EVIL = ["https://evil.example/forged.png", "http://169.254.169.254/latest/meta-data/"]


def _start_silent_job(dep: Deployment, what: str, duration: float):
    """A chain whose upstream task succeeds after ``duration`` s but whose callback kie.ai never sends."""
    prompt = unique(f"{what} [sim:nocallback] [sim:duration={duration}]")
    tag, job_id = new_id(what), new_id(f"{what}-job")
    res = (dep.generate(prompt, job_id=job_id) | dep.user_task(tag)).apply_async()
    job = dep.wait_job_state(job_id, "submitted", timeout=60)
    return res, tag, job_id, job["task_id"]


def _post_forged(dep: Deployment, job_id: str, task_id: str, body: dict) -> requests.Response:
    headers = {"Content-Type": "application/json", **sig_headers(task_id)}    # a VALID signature
    url = f"{dep.web_url}/kie/callback/{job_id}?token={job_token(job_id, WEBHOOK_SECRET)}"  # a VALID token
    return requests.post(url, data=json.dumps(body).encode(), headers=headers, timeout=10)


@pytest.mark.parametrize("when", ["after-upstream-finished", "while-still-generating"])
def test_valid_signature_forged_result_urls_never_reach_the_chain(live, when):
    duration = 0.5 if when == "after-upstream-finished" else 4
    res, tag, job_id, task_id = _start_silent_job(live, f"forged-urls-{when}", duration)
    if when == "after-upstream-finished":
        wait_for(lambda: live.sim(f"/_sim/tasks/{task_id}")["state"] == "success", 30, "upstream task success")
    else:
        assert live.sim(f"/_sim/tasks/{task_id}")["state"] != "success"

    ans = _post_forged(live, job_id, task_id, success_body(task_id, urls=EVIL))
    assert ans.status_code == 202                  # recorded as a hint, not trusted

    out = res.get(timeout=60)
    [received] = live.wait_recorded(tag)
    real = live.sim(f"/_sim/tasks/{task_id}")["result_urls"]
    assert received["result_urls"] == real and out["received"]["result_urls"] == real
    assert all(u.startswith(live.sim_url) for u in received["result_urls"])
    assert not set(EVIL) & set(received["result_urls"])
    job = live.job(job_id)
    assert job["state"] == "succeeded"
    assert json.loads(job["outcome"])["result_urls"] == real
    assert json.loads(job["callback"])["result_urls"] == EVIL     # the forged body was seen, and overruled
    assert len(live.recorded(tag)) == 1


def test_valid_signature_forged_failure_does_not_fail_the_chain(live):
    res, tag, job_id, task_id = _start_silent_job(live, "forged-fail", 0.5)
    wait_for(lambda: live.sim(f"/_sim/tasks/{task_id}")["state"] == "success", 30, "upstream task success")
    contradicted = _counter(live, "kie_callback_checks_failed_total", "contradicted")

    ans = _post_forged(live, job_id, task_id, fail_body(task_id, failMsg="forged: content policy"))
    assert ans.status_code == 202

    out = res.get(timeout=60)             # raises GenerationFailed if the forged failure had been trusted
    [received] = live.wait_recorded(tag)
    assert received["state"] == "success"
    assert received["result_urls"] == live.sim(f"/_sim/tasks/{task_id}")["result_urls"]
    assert out["received"] == received
    assert live.job(job_id)["state"] == "succeeded"
    assert _counter(live, "kie_callback_checks_failed_total", "contradicted") == contradicted + 1


def test_forged_callback_before_real_one_then_real_delivery_resumes_once(live):
    """The normal path still works around a forgery: forged success first (while generating), then
    kie.ai's real signed callback; the chain runs once, with the real URLs."""
    prompt = unique("forged-then-real [sim:duration=3]")
    tag, job_id = new_id("forged-then-real"), new_id("ftr-job")
    res = (live.generate(prompt, job_id=job_id) | live.user_task(tag)).apply_async()
    task_id = live.wait_job_state(job_id, "submitted", timeout=60)["task_id"]
    assert _post_forged(live, job_id, task_id, success_body(task_id, urls=EVIL)).status_code == 202
    res.get(timeout=60)
    [received] = live.wait_recorded(tag)
    assert received["result_urls"] == live.sim(f"/_sim/tasks/{task_id}")["result_urls"]
    assert not set(EVIL) & set(received["result_urls"])
    # the simulator's real delivery reached the webhook (answered 2xx), and nothing ran twice
    wait_for(lambda: any(c["taskId"] == task_id for c in live.sim_stats()["callbacks_sent"]), 30, "real callback")
    assert len(live.recorded(tag)) == 1


def _counter(dep: Deployment, name: str, *labels: str) -> int:
    return int(Metrics(dep.redis, f"{dep.prefix}:metrics").snapshot().value(name, *labels))


# =========================================================================== part 3: no secret in any log


def test_no_secret_or_job_token_in_any_log_or_answer(live):
    """Drive jobs (success, upstream failure) and hostile callbacks through the live deployment,
    then read every log file the harness wrote and every answer: no API key, webhook secret, HMAC
    key or job token in any of them."""
    job_ids, answers = [], []
    ok = unique("secret-scan ok")
    bad = unique("secret-scan [sim:fail=501:nope]")
    ok_id, bad_id = new_id("scan-ok"), new_id("scan-bad")
    job_ids += [ok_id, bad_id]
    r1 = (live.generate(ok, job_id=ok_id) | live.download()).apply_async()
    r2 = live.generate(bad, job_id=bad_id).apply_async()
    r1.get(timeout=60)
    with pytest.raises(Exception):
        r2.get(timeout=60)
    task_id = live.job(ok_id)["task_id"]
    token = job_token(ok_id, WEBHOOK_SECRET)
    base = f"{live.web_url}/kie/callback/{ok_id}"
    hostile = [
        ("POST", f"{base}?token={token}", {"Content-Type": "application/json", **sig_headers(task_id)},
         json.dumps(success_body(task_id)).encode()),                                  # replay: 200
        ("POST", f"{base}?token={token[:-2]}zz", {"Content-Type": "application/json"}, b"{}"),   # 401
        ("POST", f"{base}?token={'é' * 8}", {"Content-Type": "application/json"}, b"{}"),        # 401
        ("POST", f"{base}?token={token}", {"Content-Type": "application/json"}, b"{" * 50),      # 400
        ("POST", f"{base}?token={token}", {"Content-Type": "application/json"}, b'{"code": "x"}'),  # 422
        ("POST", f"{base}?token={token}", {"Content-Type": "application/json", "X-Webhook-Timestamp": "1" * 500,
                                           "X-Webhook-Signature": HMAC_KEY}, json.dumps(success_body(task_id)).encode()),
        ("POST", f"{base}?token={token}", {"Content-Type": "text/plain"}, API_KEY.encode()),     # 415
        ("GET", f"{base}?token={token}", {}, b""),                                               # 405
        ("POST", f"{live.web_url}/kie/callback/{new_id('ghost')}?token={WEBHOOK_SECRET}",
         {"Content-Type": "application/json"}, b"{}"),                                           # 401
    ]
    for method, url, headers, body in hostile:
        r = requests.request(method, url, headers=headers, data=body, timeout=10)
        assert r.status_code < 500, (r.status_code, r.text[:200])
        assert r.headers["Content-Type"] == "application/json"
        answers.append(r.text)
    answers.append(requests.get(live.web_url + "/metrics", timeout=5).text)
    answers.append(requests.get(live.web_url + "/healthz", timeout=5).text)

    assert job_token(ok_id, WEBHOOK_SECRET) in _job_tokens(live)
    assert not _leaks(live, answers, expect_logs={"kiesim", "web", "w1", "beat", "userworker"})
    # the scan would see a leak: the deployment really logged the callbacks' traffic
    assert "kie.complete" in live.stack.log_of("w1")


def test_no_secret_or_job_token_in_the_matrix_deployments_logs(quiet):
    """The matrix above threw ~120 hostile callbacks (tokens in URLs, secrets in bodies) at this webhook."""
    answers = [requests.get(quiet.web_url + "/metrics", timeout=5).text]
    assert not _leaks(quiet, answers, expect_logs={"kiesim", "web"})


def _job_tokens(dep: Deployment) -> set[str]:
    """The token of every job the deployment has a record of (all tests of the module)."""
    return {job_token(k.decode().split(":job:", 1)[1], WEBHOOK_SECRET)
            for k in dep.redis.scan_iter(f"{dep.prefix}:job:*")
            if not k.decode().endswith((":waiters", ":done"))}


def _leaks(dep: Deployment, answers: list[str], expect_logs: set[str]) -> list[str]:
    logs = sorted(Path(dep.stack.workdir).glob("*.log"))
    assert {p.stem for p in logs} >= expect_logs
    needles = {"API key": API_KEY, "webhook secret": WEBHOOK_SECRET, "HMAC key": HMAC_KEY}
    needles.update({f"job token {t[:6]}...": t for t in _job_tokens(dep)})
    leaks = []
    for path in logs:
        text = path.read_text(errors="replace")
        leaks += [f"{name} in {path.name}" for name, value in needles.items() if value in text]
    for text in answers:
        leaks += [f"{name} in an answer" for name, value in needles.items() if value in text]
    return leaks


def test_webhook_process_log_redacts_secrets_and_job_tokens_without_logging_config(tmp_path):
    """Under gunicorn nothing configures the root logger: the app's own records must still pass the
    redaction filters (they used to fall through to ``logging.lastResort``, unfiltered)."""
    import subprocess
    import sys
    token = job_token("some-job", WEBHOOK_SECRET)
    script = (
        "import logging, webhook\n"
        "from worker.settings import Settings\n"
        f"s = Settings.from_env({{'REDIS_URL': 'redis://127.0.0.1:6379/3', 'KIE_API_KEY': {API_KEY!r},"
        f" 'KIE_CALLBACK_URL': 'http://127.0.0.1:9', 'KIE_WEBHOOK_SECRET': {WEBHOOK_SECRET!r},"
        f" 'KIE_WEBHOOK_HMAC_KEY': {HMAC_KEY!r}, 'KIE_KEY_PREFIX': 't-logcheck'}})\n"
        "webhook.create_app(s)\n"
        "log = logging.getLogger('kie_queue.webhook')\n"
        f"log.warning('keys %s %s %s', {API_KEY!r}, {WEBHOOK_SECRET!r}, {HMAC_KEY!r})\n"
        f"log.info('callback /kie/callback/some-job?token={token}&x=1')\n"
        "try:\n"
        f"    raise RuntimeError('failed for http://h/kie/callback/j?token={token} with {API_KEY}')\n"
        "except RuntimeError:\n"
        "    log.exception('webhook error')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "keys *** *** ***" in text and "token=***&x=1" in text and "RuntimeError" in text
    for value in (API_KEY, WEBHOOK_SECRET, HMAC_KEY, token):
        assert value not in text
