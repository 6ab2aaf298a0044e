"""Tests of worker.results.storage: one test body run over every backend (a local folder and S3).

The S3 backend talks to moto's standalone server (a real S3 API over HTTP on a loopback port) through
boto3, as it would talk to AWS; what the tests check there they read back with a boto3 client of their
own.  Bodies that must stream (several multipart parts, a download cut off midway) come from a local
HTTP server that makes them on the fly.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import urllib.parse

import pytest
import requests

from s3support import ISOLATION, SECRET_ACCESS_KEY, aws_env
from worker.errors import DownloadError, StorageError
from worker.results.fetching import download_result, fetch_to_storage
from worker.results.storage import LocalStorage
from worker.results.storage.s3 import MIN_PART_SIZE, S3Storage

PNG_HEAD = b"\x89PNG\r\n\x1a\n"
LOCAL = ["127.0.0.1"]
MB = 1024 * 1024


def png_body(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that sniff as PNG (not a valid picture: the rules only read the first bytes)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048   # 64 KiB, distinct per seed
    return (PNG_HEAD + (block * (size // len(block) + 1)))[:size]


def chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


class CutOff(Exception):
    pass


def cut_after(data: bytes, n: int):
    yield from chunks(data[:n])
    raise CutOff(f"source ended after {n} bytes")


# --- backends -------------------------------------------------------------------------------------

class LocalBackend:
    name = "file"

    def __init__(self, tmp_path):
        self.storage = LocalStorage(tmp_path / "root")

    def read(self, name: str) -> bytes | None:
        path = self.storage.path_for(name)
        return open(path, "rb").read() if os.path.exists(path) else None

    def version(self, name: str):
        st = os.stat(self.storage.path_for(name))
        return st.st_ino, st.st_mtime_ns

    def content_type(self, name: str) -> str | None:
        return None     # a folder keeps no metadata

    def everything(self) -> list[str]:
        """Every file under the root (temporary ones included), relative to it."""
        found = []
        for d, _, files in os.walk(self.storage.root):
            found += [os.path.relpath(os.path.join(d, f), self.storage.root) for f in files]
        return sorted(found)

    def broken(self):
        blocker = os.path.join(os.path.dirname(self.storage.root), "a-file")
        open(blocker, "w").close()
        return LocalStorage(os.path.join(blocker, "root"))


class S3Backend:
    name = "s3"

    def __init__(self, server, bucket: str):
        self.server, self.bucket = server, bucket
        self.client = server.client()
        self.storage = S3Storage(bucket, "results/v1", endpoint_url=server.endpoint, part_size=MIN_PART_SIZE,
                                 max_attempts=2)

    def key(self, name: str) -> str:
        return f"results/v1/{name}"

    def read(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def version(self, name: str):
        head = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        return head["VersionId"], head["LastModified"]

    def content_type(self, name: str) -> str | None:
        return self.client.head_object(Bucket=self.bucket, Key=self.key(name))["ContentType"]

    def everything(self) -> list[str]:
        """Every current object and every unfinished multipart upload in the bucket."""
        objects = self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return sorted([o["Key"].removeprefix("results/v1/") for o in objects]
                      + [f"upload:{u['Key']}" for u in uploads])

    def broken(self):
        return S3Storage("kie-no-such-bucket", endpoint_url=self.server.endpoint, max_attempts=1)


@pytest.fixture
def s3_env(monkeypatch, moto_server):
    for name, value in aws_env(moto_server.endpoint).items():
        monkeypatch.setenv(name, value)
    return moto_server


@pytest.fixture(params=["file", "s3"])
def backend(request, tmp_path):
    if request.param == "file":
        return LocalBackend(tmp_path)
    server = request.getfixturevalue("s3_env")
    return S3Backend(server, server.new_bucket(versioned=True))


# --- a local HTTP server of large and broken bodies -----------------------------------------------

class BodyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        # /body/<size>/<seed>[/cut/<n>]: a PNG-looking body of <size> bytes; with cut, only n are sent
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        size, seed = int(parts[1]), int(parts[2])
        send = int(parts[4]) if len(parts) > 4 and parts[3] == "cut" else size
        body = png_body(size, seed)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        for chunk in chunks(body[:send]):
            self.wfile.write(chunk)
        self.wfile.flush()
        if send < size:
            self.close_connection = True
            self.connection.shutdown(2)


@pytest.fixture(scope="module")
def bodies():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BodyHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- one body, every backend ----------------------------------------------------------------------

def test_store_and_read_back(backend):
    data = png_body(300_000, 1)
    stored = backend.storage.store("job-1/0.png", chunks(data), content_type="image/png")
    assert backend.read("job-1/0.png") == data
    assert (stored.sha256, stored.bytes, stored.skipped) == (hashlib.sha256(data).hexdigest(), len(data), False)
    assert stored.uri == backend.storage.uri_for("job-1/0.png")
    if backend.name == "s3":
        assert stored.uri == f"s3://{backend.bucket}/results/v1/job-1/0.png" and stored.path is None
        head = backend.client.head_object(Bucket=backend.bucket, Key=backend.key("job-1/0.png"))
        assert head["ContentType"] == "image/png"
        assert head["Metadata"] == {"sha256": stored.sha256, "bytes": str(len(data))}
    else:
        assert stored.path == backend.storage.path_for("job-1/0.png") and stored.uri == "file://" + stored.path
    assert backend.everything() == ["job-1/0.png"]



def test_a_stored_file_reads_back_by_its_uri_and_nothing_else_does(backend):
    storage = backend.storage
    stored = storage.store("job-7/0.png", [b"\x89PNG", b" streamed back"], content_type="image/png")
    name = storage.name_for_uri(stored.uri)
    assert name == "job-7/0.png"
    assert b"".join(storage.read(name, chunk_size=4)) == b"\x89PNG streamed back"
    with pytest.raises(FileNotFoundError):
        b"".join(storage.read("job-7/1.png"))
    base = stored.uri[: -len("job-7/0.png")]
    for uri in (base + "job-7/../../x.png", base.rstrip("/") + "-other/job-7/0.png", "file:///etc/passwd",
                "s3://another-bucket/job-7/0.png", "", base):
        assert storage.name_for_uri(uri) is None, uri

@pytest.mark.parametrize("size", [200_000, 2 * MIN_PART_SIZE + 12345], ids=["one-part", "multipart"])
def test_same_bytes_again_are_skipped_other_bytes_replace(backend, size):
    data = png_body(size, 2)
    first = backend.storage.store("j/0.png", chunks(data), content_type="image/png")
    version = backend.version("j/0.png")
    again = backend.storage.store("j/0.png", chunks(data), content_type="image/png")
    assert again.skipped and again.sha256 == first.sha256 and again.uri == first.uri
    assert backend.version("j/0.png") == version            # not rewritten
    other = png_body(size, 3)
    replaced = backend.storage.store("j/0.png", chunks(other), content_type="image/png")
    assert not replaced.skipped and replaced.sha256 == hashlib.sha256(other).hexdigest()
    assert backend.read("j/0.png") == other and backend.version("j/0.png") != version
    assert backend.everything() == ["j/0.png"]


@pytest.mark.parametrize("cut", [100_000, MIN_PART_SIZE + 1, 2 * MIN_PART_SIZE + 10],
                         ids=["in-first-part", "after-one-part", "after-two-parts"])
def test_a_source_failing_midway_leaves_nothing_and_keeps_the_old_file(backend, cut):
    data = png_body(3 * MIN_PART_SIZE, 4)
    with pytest.raises(CutOff):
        backend.storage.store("k/new.png", cut_after(data, cut), content_type="image/png")
    assert backend.everything() == []
    old = png_body(1000, 5)
    backend.storage.store("k/0.png", chunks(old), content_type="image/png")
    with pytest.raises(CutOff):
        backend.storage.store("k/0.png", cut_after(data, cut), content_type="image/png")
    assert backend.read("k/0.png") == old and backend.everything() == ["k/0.png"]


def test_a_download_streams_through_into_storage(backend, bodies):
    size = 2 * MIN_PART_SIZE + 777
    entry = fetch_to_storage(f"{bodies}/body/{size}/6", backend.storage, "job-7/0.{ext}", allow_hosts=LOCAL,
                             max_bytes=64 * MB, timeout=60)
    data = png_body(size, 6)
    assert backend.read("job-7/0.png") == data
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == size
    assert entry["uri"] == backend.storage.uri_for("job-7/0.png") and entry["content_type"] == "image/png"
    assert backend.content_type("job-7/0.png") in (None, "image/png")
    assert entry["path"] == (backend.storage.path_for("job-7/0.png") if backend.name == "file" else None)


@pytest.mark.parametrize("sent", [1000, MIN_PART_SIZE + 64 * 1024], ids=["early", "after-a-part"])
def test_a_download_cut_off_midway_leaves_no_file(backend, bodies, sent):
    size = 3 * MIN_PART_SIZE
    with pytest.raises(DownloadError) as info:
        fetch_to_storage(f"{bodies}/body/{size}/7/cut/{sent}", backend.storage, "job-8/0.{ext}", allow_hosts=LOCAL,
                         max_bytes=64 * MB, timeout=60)
    assert info.value.transient
    assert backend.everything() == []


def test_a_file_over_the_cap_while_streaming_leaves_no_file(backend):
    with pytest.raises(Exception, match="limit"):
        from worker.results import fetching
        backend.storage.store("c/0.png", fetching._capped(chunks(png_body(MIN_PART_SIZE + 10)), MIN_PART_SIZE),
                              content_type="image/png")
    assert backend.everything() == []


def test_download_result_twice_writes_the_same_names(backend, bodies):
    result = {"job_id": "order-9", "result_urls": [f"{bodies}/body/5000/8", f"{bodies}/body/7000/9"]}
    first = download_result(result, storage=backend.storage, allow_hosts=LOCAL, timeout=30)
    second = download_result(result, storage=backend.storage, allow_hosts=LOCAL, timeout=30)
    assert [f["uri"] for f in first["files"]] == [backend.storage.uri_for("order-9/0.png"),
                                                   backend.storage.uri_for("order-9/1.png")]
    assert second == first
    assert backend.everything() == ["order-9/0.png", "order-9/1.png"]


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../b", "a//b", "", "a b", "ü.png", "x" * 2000])
def test_unsafe_names_are_refused(backend, name):
    with pytest.raises(ValueError):
        backend.storage.store(name, chunks(b"x"), content_type="image/png")
    with pytest.raises(ValueError):
        backend.storage.uri_for(name)
    assert backend.everything() == []


def test_check(backend):
    backend.storage.check()
    with pytest.raises(StorageError) as info:
        backend.broken().check()
    assert info.value.variable == "KIE_STORAGE_URL" and not info.value.transient


MEASURE = r"""
import json, sys
from worker.results.fetching import fetch_to_storage
from worker.results.storage import LocalStorage
from worker.results.storage.s3 import MIN_PART_SIZE, S3Storage

kind, where, base_url, warm, big = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if kind == "s3":
    bucket, endpoint = where.split("@", 1)
    storage = S3Storage(bucket, "results/v1", endpoint_url=endpoint, part_size=MIN_PART_SIZE)
else:
    storage = LocalStorage(where)
def peak_kib():
    # this process's own peak RSS (not ru_maxrss: after fork+exec it can still hold the parent's peak)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
fetch_to_storage(f"{base_url}/body/{warm}/20", storage, "warm/0.{ext}", allow_hosts=["127.0.0.1"],
                 max_bytes=big, timeout=120)
before = peak_kib()
entry = fetch_to_storage(f"{base_url}/body/{big}/21", storage, "big/0.{ext}", allow_hosts=["127.0.0.1"],
                         max_bytes=big, timeout=120)
print(json.dumps({"before_kib": before, "after_kib": peak_kib(), "sha256": entry["sha256"], "bytes": entry["bytes"]}))
"""


def test_memory_stays_flat_while_a_50_mb_file_streams_through(backend, bodies):
    """In a process of its own: the peak RSS after a 50 MiB download is within 20 MiB of the peak after a
    warm-up download of 2.5 parts (a body held whole would add at least 37 MiB)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    big, warm = 50 * MB, 5 * MIN_PART_SIZE // 2
    where = (f"{backend.bucket}@{backend.server.endpoint}" if backend.name == "s3"
             else str(backend.storage.root))
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", MEASURE, backend.name, where, bodies, str(warm), str(big)],
                         capture_output=True, text=True, timeout=300, cwd=root,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    growth_mib = (figures["after_kib"] - figures["before_kib"]) / 1024
    print(f"{backend.name}: peak RSS {figures['before_kib'] / 1024:.1f} MiB after the warm-up, "
          f"{figures['after_kib'] / 1024:.1f} MiB after 50 MiB (+{growth_mib:.1f} MiB)")
    assert growth_mib < 20
    data = png_body(big, 21)
    assert figures["bytes"] == big and figures["sha256"] == hashlib.sha256(data).hexdigest()
    assert backend.read("big/0.png") == data


# --- S3 only --------------------------------------------------------------------------------------

def test_presigned_url_needs_no_credentials(s3_env):
    bucket = s3_env.new_bucket()
    storage = S3Storage(bucket, "p", endpoint_url=s3_env.endpoint, presign_seconds=120)
    data = png_body(50_000, 10)
    stored = storage.store("j/0.png", chunks(data), content_type="image/png")
    url = stored.presigned_url
    assert url.startswith(s3_env.endpoint + f"/{bucket}/p/j/0.png?") and "X-Amz-Expires=120" in url
    answer = requests.get(url, timeout=10)        # plain HTTP, no credentials at all
    assert answer.status_code == 200 and answer.content == data
    assert answer.headers["Content-Type"] == "image/png"
    # (moto checks no signature of a presigned URL, so its expiry and tampering are AWS's to enforce)
    assert storage.store("j/0.png", chunks(data), content_type="image/png").presigned_url   # skipped: still a URL


def test_a_missing_bucket_is_a_permanent_download_error(s3_env, bodies):
    storage = S3Storage("kie-no-such-bucket", endpoint_url=s3_env.endpoint, max_attempts=1)
    with pytest.raises(DownloadError) as info:
        fetch_to_storage(f"{bodies}/body/5000/11", storage, "j/0.{ext}", allow_hosts=LOCAL)
    assert not info.value.transient and "kie-no-such-bucket" in str(info.value)


def test_an_unreachable_endpoint_is_transient(monkeypatch, bodies):
    from worker.cli.stack import free_port
    endpoint = f"http://127.0.0.1:{free_port()}"     # nothing listens there
    for name, value in aws_env(endpoint).items():
        monkeypatch.setenv(name, value)
    storage = S3Storage("kie-bucket", endpoint_url=endpoint, max_attempts=1, timeout=2)
    with pytest.raises(StorageError) as info:
        storage.check()
    assert info.value.transient and info.value.variable == "KIE_S3_ENDPOINT_URL"
    with pytest.raises(DownloadError) as info:
        fetch_to_storage(f"{bodies}/body/5000/12", storage, "j/0.{ext}", allow_hosts=LOCAL)
    assert info.value.transient


def test_no_credentials_names_the_variables(monkeypatch, moto_server):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**ISOLATION, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StorageError) as info:
        S3Storage("kie-bucket", endpoint_url=moto_server.endpoint, max_attempts=1).check()
    assert "AWS_ACCESS_KEY_ID" in info.value.variable and not info.value.transient


def test_bad_credentials_are_refused_and_named(moto_auth_server, monkeypatch):
    """On a server that checks signatures: a wrong secret or an unknown key id is a permanent error naming
    the credential variables, and neither the secret nor the key's text appears in it."""
    for name, value in aws_env(moto_auth_server.endpoint).items():   # the test key pair: unknown to IAM
        monkeypatch.setenv(name, value)
    storage = S3Storage(moto_auth_server.bucket, endpoint_url=moto_auth_server.endpoint, max_attempts=1)
    with pytest.raises(StorageError) as info:
        storage.check()
    assert info.value.variable == "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" and not info.value.transient
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_auth_server.key_id)  # a real key id, the wrong secret
    with pytest.raises(StorageError) as info:
        S3Storage(moto_auth_server.bucket, endpoint_url=moto_auth_server.endpoint, max_attempts=1).store(
            "j/0.png", chunks(b"x" * 10), content_type="image/png")
    assert "credentials" in info.value.reason and not info.value.transient
    assert SECRET_ACCESS_KEY not in str(info.value) and moto_auth_server.secret not in str(info.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_auth_server.secret)   # the right pair works
    S3Storage(moto_auth_server.bucket, endpoint_url=moto_auth_server.endpoint, max_attempts=1).check()


class FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to moto, but answers the first ``failures`` requests with 503 SlowDown (S3's throttling)."""

    protocol_version = "HTTP/1.1"
    target = ""
    failures = 0
    seen: list = []
    refuse = None       # or a function (method, path) -> bool: answer those 500 InternalError, always

    def log_message(self, *args):
        pass

    def _relay(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        FlakyProxy.seen.append((self.command, self.path))
        refused = FlakyProxy.refuse is not None and FlakyProxy.refuse(self.command, self.path)
        if FlakyProxy.failures > 0 or refused:
            FlakyProxy.failures -= 0 if refused else 1
            code = b"InternalError" if refused else b"SlowDown"
            error = b"<Error><Code>" + code + b"</Code><Message>try again</Message></Error>"
            self.send_response(500 if refused else 503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(b"" if self.command == "HEAD" else error)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        answer = requests.request(self.command, FlakyProxy.target + self.path, headers=headers, data=body, timeout=30)
        self.send_response(answer.status_code)
        for k, v in answer.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", answer.headers.get("Content-Length", str(len(answer.content))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay


@pytest.fixture
def flaky(s3_env):
    FlakyProxy.target, FlakyProxy.failures, FlakyProxy.seen, FlakyProxy.refuse = s3_env.endpoint, 0, [], None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyProxy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_throttling_is_retried_by_botocore_then_reported_as_transient(s3_env, flaky, bodies):
    bucket = s3_env.new_bucket()
    FlakyProxy.failures = 3
    storage = S3Storage(bucket, endpoint_url=flaky, max_attempts=5, part_size=MIN_PART_SIZE)
    entry = fetch_to_storage(f"{bodies}/body/{MIN_PART_SIZE + 1000}/13", storage, "j/0.{ext}", allow_hosts=LOCAL,
                             max_bytes=64 * MB, timeout=60)
    assert FlakyProxy.failures == 0 and len(FlakyProxy.seen) > 3          # three 503s, each retried
    body = s3_env.client().get_object(Bucket=bucket, Key="j/0.png")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    FlakyProxy.failures = 10**6                                            # throttled for good
    storage = S3Storage(bucket, endpoint_url=flaky, max_attempts=2)
    with pytest.raises(DownloadError) as info:
        fetch_to_storage(f"{bodies}/body/5000/14", storage, "j/1.{ext}", allow_hosts=LOCAL)
    assert info.value.transient and "HeadObject" in str(info.value) and "HTTP 503" in str(info.value)
    FlakyProxy.failures = 0
    assert storage.store("j/1.png", chunks(b"y" * 100), content_type="image/png").bytes == 100


def test_a_store_failing_midway_aborts_the_upload(s3_env, flaky, bodies):
    """The second part never gets in (500 on every try): the multipart upload is aborted, no object is left,
    and the error is transient (the task retries it)."""
    bucket = s3_env.new_bucket()
    FlakyProxy.refuse = lambda method, path: method == "PUT" and "partNumber=2" in path
    storage = S3Storage(bucket, "r", endpoint_url=flaky, max_attempts=2, part_size=MIN_PART_SIZE)
    with pytest.raises(DownloadError) as info:
        fetch_to_storage(f"{bodies}/body/{3 * MIN_PART_SIZE}/15", storage, "j/0.{ext}", allow_hosts=LOCAL,
                         max_bytes=64 * MB, timeout=60)
    assert info.value.transient and "UploadPart" in str(info.value) and "InternalError" in str(info.value)
    assert sum(1 for m, p in FlakyProxy.seen if m == "PUT" and "partNumber=1" in p) == 1
    assert any(m == "DELETE" and "uploadId=" in p for m, p in FlakyProxy.seen)        # AbortMultipartUpload
    client = s3_env.client()
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_part_size_below_the_s3_minimum_is_refused():
    with pytest.raises(ValueError, match="part_size"):
        S3Storage("kie-bucket", part_size=MIN_PART_SIZE - 1)
