"""Tests of worker.results.fetching and worker.results.storage against a real local HTTP server.

The server runs on 127.0.0.1 (loopback, so every test that expects success allows it explicitly).
Redirects to 10.0.0.1 and 169.254.169.254 are never connected to: a spy on ``socket.socket.connect``
records every outgoing connection and the tests assert those addresses never appear.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import threading
import time

import pytest
import requests
from PIL import Image

from worker.results.fetching import (AllowList, download_result, download_session, fetch_to_storage, job_dir, sniff)
from worker.errors import ConfigError, DownloadError, InvalidInput
from worker.results.storage import LocalStorage, storage_from_settings, validate_name


def _image_bytes(fmt: str, size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buf, format=fmt)
    return buf.getvalue()


PNG = _image_bytes("PNG")
JPEG = _image_bytes("JPEG")
GIF = _image_bytes("GIF")
WEBP = _image_bytes("WEBP")
HTML = b"<!doctype html><html><body>not an image</body></html>"
BIG = PNG + b"\0" * 5000


class Handler(http.server.BaseHTTPRequestHandler):
    stall = threading.Event()  # set at teardown to end a stalled response
    seen_headers: list = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, body: bytes, ctype: str | None, *, length: bool = True, status: int = 200):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str, status: int = 302):
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        Handler.seen_headers.append(dict(self.headers))
        path = self.path.split("?", 1)[0]
        if path == "/img.png":
            self._send(PNG, "image/png")
        elif path == "/img.jpg":
            self._send(JPEG, "image/jpeg; charset=binary")
        elif path == "/img.webp":
            self._send(WEBP, "image/webp")
        elif path == "/notype":
            self._send(GIF, None)
        elif path == "/octet":
            self._send(WEBP, "application/octet-stream")
        elif path == "/fake.png":
            self._send(HTML, "image/png")
        elif path == "/page":
            self._send(HTML, "text/html")
        elif path == "/jpeg-as-png":
            self._send(JPEG, "image/png")
        elif path == "/big.png":
            self._send(BIG, "image/png")
        elif path == "/big-nolength.png":  # HTTP/1.0: the body ends when the connection closes
            self._send(BIG, "image/png", length=False)
        elif path == "/short.png":  # claims more than it sends
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG) + 100))
            self.end_headers()
            self.wfile.write(PNG)
        elif path == "/missing":
            self._send(b"nope", "text/plain", status=404)
        elif path == "/busy.png":
            self._send(b"try later", "text/plain", status=503)
        elif path == "/redirect":
            self._redirect("/img.png")
        elif path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            if n > 0:
                self._redirect(f"/chain/{n - 1}", 307 if n % 2 else 301)
            else:
                self._send(PNG, "image/png")
        elif path == "/to-private":
            self._redirect("http://10.0.0.1/x")
        elif path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/to-file":
            self._redirect("file:///etc/passwd")
        elif path == "/stall.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG) + 100000))
            self.end_headers()
            self.wfile.write(PNG)
            self.wfile.flush()
            Handler.stall.wait(10)
        elif path == "/drip.png":  # a byte every 0.2 s: each read is quick, the whole is too slow
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG) + 1000))
            self.end_headers()
            self.wfile.write(PNG)
            for _ in range(1000):
                if Handler.stall.wait(0.2):
                    break
                self.wfile.write(b"\0")
                self.wfile.flush()
        else:
            self._send(b"unknown", "text/plain", status=404)


@pytest.fixture(scope="module")
def server():
    Handler.stall.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    Handler.stall.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def store(tmp_path):
    return LocalStorage(tmp_path / "store")


@pytest.fixture
def connects(monkeypatch):
    """Every address an outgoing TCP connection was attempted to, in order."""
    seen: list[str] = []
    original = socket.socket.connect

    def spy(self, address):
        seen.append(address[0])
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", spy)
    return seen


def files_in(store: LocalStorage) -> list[str]:
    """Every file (temporary ones included) under the storage root, relative to it."""
    found = []
    for dirpath, _dirs, names in os.walk(store.root):
        found += [os.path.relpath(os.path.join(dirpath, n), store.root) for n in names]
    return sorted(found)


LOCAL = ["127.0.0.1"]


# --- successful downloads ---------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, ctype, ext", [
    ("/img.png", PNG, "image/png", "png"),
    ("/img.jpg", JPEG, "image/jpeg", "jpg"),
    ("/img.webp", WEBP, "image/webp", "webp"),
    ("/notype", GIF, "image/gif", "gif"),
    ("/octet", WEBP, "image/webp", "webp"),
    ("/page", None, None, None),
])
def test_allowed_download(server, store, path, body, ctype, ext):
    if body is None:  # text/html with HTML bytes: sniffing refuses it
        with pytest.raises(DownloadError, match="not a PNG, JPEG, WEBP or GIF"):
            fetch_to_storage(server + path, store, "j/0.{ext}", allow_hosts=LOCAL)
        assert files_in(store) == []
        return
    info = fetch_to_storage(server + path, store, "job-1/0.{ext}", allow_hosts=LOCAL)
    assert info == {"url": server + path, "path": os.path.join(store.root, "job-1", f"0.{ext}"),
                    "uri": "file://" + os.path.join(store.root, "job-1", f"0.{ext}"), "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body), "content_type": ctype}
    with open(info["path"], "rb") as f:
        assert f.read() == body
    assert files_in(store) == [f"job-1/0.{ext}"]


def test_user_agent_and_identity_encoding(server, store):
    Handler.seen_headers.clear()
    fetch_to_storage(server + "/img.png", store, "a.png", allow_hosts=LOCAL)
    headers = Handler.seen_headers[-1]
    assert headers["User-Agent"].startswith("kie-queue/")
    assert headers["Accept-Encoding"] == "identity"


def test_cidr_allow_entry(server, store):
    info = fetch_to_storage(server + "/img.png", store, "c.png", allow_hosts=["127.0.0.0/8"])
    assert info["bytes"] == len(PNG)


def test_hostname_allow_entry(server, store):
    url = server.replace("127.0.0.1", "localhost") + "/img.png"
    info = fetch_to_storage(url, store, "h.png", allow_hosts=["localhost"])
    assert info["sha256"] == hashlib.sha256(PNG).hexdigest()


def test_redirect_within_allowed_host(server, store):
    info = fetch_to_storage(server + "/redirect", store, "r.{ext}", allow_hosts=LOCAL)
    assert info["content_type"] == "image/png" and info["path"].endswith("r.png")


def test_redirect_chain_up_to_the_limit(server, store):
    info = fetch_to_storage(server + "/chain/3", store, "c.png", allow_hosts=LOCAL, max_redirects=3)
    assert info["bytes"] == len(PNG)


def test_expected_type(server, store):
    fetch_to_storage(server + "/img.png", store, "e.png", allow_hosts=LOCAL, expected_type="image/png")
    with pytest.raises(DownloadError, match="expected image/jpeg"):
        fetch_to_storage(server + "/img.png", store, "e2.jpg", allow_hosts=LOCAL, expected_type="jpeg")
    assert files_in(store) == ["e.png"]


def test_shared_session(server, store):
    session = download_session(allow_hosts=LOCAL)
    try:
        for i in range(3):
            fetch_to_storage(server + "/img.png", store, f"s/{i}.png", allow_hosts=LOCAL, session=session)
        with pytest.raises(ValueError, match="download_session"):
            fetch_to_storage(server + "/img.png", store, "x.png", allow_hosts=[], session=session)
        with pytest.raises(ValueError, match="download_session"):
            fetch_to_storage(server + "/img.png", store, "x.png", allow_hosts=LOCAL, session=requests.Session())
    finally:
        session.close()
    assert files_in(store) == ["s/0.png", "s/1.png", "s/2.png"]


# --- refusals ---------------------------------------------------------------------------------------

def test_loopback_refused_without_allow_entry(server, store, connects):
    with pytest.raises(DownloadError, match="127.0.0.1 .* is loopback") as exc:
        fetch_to_storage(server + "/img.png", store, "x.png")
    assert exc.value.url == server + "/img.png"
    assert connects == []
    assert files_in(store) == []


def test_other_allow_entry_does_not_cover_loopback(server, store, connects):
    with pytest.raises(DownloadError, match="loopback"):
        fetch_to_storage(server + "/img.png", store, "x.png", allow_hosts=["10.0.0.0/8", "example.com"])
    assert connects == [] and files_in(store) == []


@pytest.mark.parametrize("path, address, kind", [
    ("/to-private", "10.0.0.1", "private"),
    ("/to-metadata", "169.254.169.254", "link-local"),
])
def test_redirect_to_private_address_refused_before_connecting(server, store, connects, path, address, kind):
    with pytest.raises(DownloadError) as exc:
        fetch_to_storage(server + path, store, "x.png", allow_hosts=LOCAL)
    assert f"address {address}" in exc.value.reason and kind in exc.value.reason
    assert "redirected to" in exc.value.reason
    assert address not in connects and connects  # the first hop did connect, the second never
    assert files_in(store) == []


def test_too_many_redirects(server, store):
    with pytest.raises(DownloadError, match=r"too many redirects \(more than 3\)"):
        fetch_to_storage(server + "/chain/4", store, "x.png", allow_hosts=LOCAL, max_redirects=3)
    with pytest.raises(DownloadError, match="too many redirects"):
        fetch_to_storage(server + "/redirect", store, "x.png", allow_hosts=LOCAL, max_redirects=0)
    assert files_in(store) == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1/",
                                 "/relative/path.png", "http:///nohost"])
def test_non_http_schemes_refused(store, url, connects):
    with pytest.raises(DownloadError) as exc:
        fetch_to_storage(url, store, "x.png", allow_hosts=LOCAL)
    assert "scheme" in exc.value.reason or "absolute" in exc.value.reason or "no host" in exc.value.reason
    assert connects == [] and files_in(store) == []


def test_redirect_to_file_scheme_refused(server, store):
    with pytest.raises(DownloadError, match="redirected to file:///etc/passwd: only http and https"):
        fetch_to_storage(server + "/to-file", store, "x.png", allow_hosts=LOCAL)
    assert files_in(store) == []


def test_html_served_as_png_refused(server, store):
    with pytest.raises(DownloadError, match="not a PNG, JPEG, WEBP or GIF.*image/png"):
        fetch_to_storage(server + "/fake.png", store, "x.{ext}", allow_hosts=LOCAL)
    with pytest.raises(DownloadError, match="'image/png' but the content is image/jpeg"):
        fetch_to_storage(server + "/jpeg-as-png", store, "x.{ext}", allow_hosts=LOCAL)
    assert files_in(store) == []


def test_oversize_by_content_length(server, store):
    with pytest.raises(DownloadError, match="Content-Length 5.* exceeds the limit of 1000 bytes"):
        fetch_to_storage(server + "/big.png", store, "job/x.png", allow_hosts=LOCAL, max_bytes=1000)
    assert files_in(store) == []


def test_oversize_while_streaming_leaves_no_temp_file(server, store):
    with pytest.raises(DownloadError, match="body exceeds the limit of 1000 bytes"):
        fetch_to_storage(server + "/big-nolength.png", store, "job/x.png", allow_hosts=LOCAL, max_bytes=1000)
    assert files_in(store) == []
    assert not os.path.exists(os.path.join(store.root, "job"))  # the folder it made is removed too


def test_failed_download_keeps_previous_file(server, store):
    good = fetch_to_storage(server + "/img.png", store, "keep.png", allow_hosts=LOCAL)
    with pytest.raises(DownloadError):
        fetch_to_storage(server + "/big-nolength.png", store, "keep.png", allow_hosts=LOCAL, max_bytes=1000)
    with open(good["path"], "rb") as f:
        assert f.read() == PNG
    assert files_in(store) == ["keep.png"]


def test_truncated_body_refused(server, store):
    with pytest.raises(DownloadError, match="transport error"):
        fetch_to_storage(server + "/short.png", store, "x.png", allow_hosts=LOCAL)
    assert files_in(store) == []


def test_http_error_status(server, store):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch_to_storage(server + "/missing", store, "x.png", allow_hosts=LOCAL)
    assert info.value.transient is False      # a refusal: retrying will not help


def test_server_error_is_transient(server, store, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 503") as info:
        fetch_to_storage(server + "/busy.png", store, "x.png", allow_hosts=LOCAL)
    assert info.value.transient is True
    assert list(tmp_path.rglob("*.png")) == []


def test_stalled_body_hits_deadline(server, store):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        fetch_to_storage(server + "/stall.png", store, "x.png", allow_hosts=LOCAL, timeout=1.0)
    assert time.monotonic() - start < 2.5
    assert files_in(store) == []


def test_dripping_body_hits_total_deadline(server, store):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        fetch_to_storage(server + "/drip.png", store, "x.png", allow_hosts=LOCAL, timeout=1.0)
    assert time.monotonic() - start < 2.5
    assert files_in(store) == []


def test_connection_refused(store):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(DownloadError, match="transport error") as info:
        fetch_to_storage(f"http://127.0.0.1:{port}/x.png", store, "x.png", allow_hosts=LOCAL)
    assert info.value.transient is True


def test_secrets_in_url_not_in_error(server, store):
    url = server + "/fake.png?token=tok-SECRET-1&w=1"
    with pytest.raises(DownloadError) as exc:
        fetch_to_storage(url, store, "x.png", allow_hosts=LOCAL)
    assert "tok-SECRET-1" not in str(exc.value) and "tok-SECRET-1" not in repr(exc.value.args)
    assert exc.value.url.endswith("/fake.png?token=***&w=1")


def test_dns_rebinding_caught_at_connect_time(server, store, connects, monkeypatch):
    """The name resolves to a public address when checked, then to loopback: the connection refuses."""
    port = int(server.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    calls = []

    def rebinding(host, *args, **kwargs):
        if host == "rebind.test":
            calls.append(host)
            address = "93.184.216.34" if len(calls) == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(DownloadError, match="127.0.0.1 .* loopback.*at connect time"):
        fetch_to_storage(f"http://rebind.test:{port}/img.png", store, "x.png")
    assert len(calls) == 2 and connects == []
    assert files_in(store) == []


# --- whole results, names, policy ------------------------------------------------------------------

def test_download_result_is_idempotent(server, store):
    result = {"job_id": "job-42", "task_id": "t1", "state": "success",
              "result_urls": [server + "/img.png", server + "/img.jpg"]}
    first = download_result(result, storage=store, allow_hosts=LOCAL, max_bytes=10**6, timeout=5)
    assert [f["path"] for f in first["files"]] == [os.path.join(store.root, "job-42", "0.png"),
                                                   os.path.join(store.root, "job-42", "1.jpg")]
    assert first["task_id"] == "t1" and "files" not in result
    second = download_result(result, storage=store, allow_hosts=LOCAL, max_bytes=10**6, timeout=5)
    assert second == first
    assert files_in(store) == ["job-42/0.png", "job-42/1.jpg"]


def test_download_result_failure_and_bad_input(server, store):
    result = {"job_id": "j", "result_urls": [server + "/img.png", server + "/fake.png"]}
    with pytest.raises(DownloadError, match="not a PNG"):
        download_result(result, storage=store, allow_hosts=LOCAL)
    with pytest.raises(InvalidInput, match="result_urls") as info:
        download_result({"job_id": "j"}, storage=store)
    assert list(info.value.errors) == ["result"]
    with pytest.raises(InvalidInput, match="job_id"):
        download_result({"result_urls": []}, storage=store)
    with pytest.raises(InvalidInput, match="result_urls list of strings"):
        download_result({"job_id": "j", "result_urls": [3]}, storage=store)
    assert download_result({"job_id": "j", "result_urls": []}, storage=store)["files"] == []


def test_job_dir():
    assert job_dir("abc-1_2.x") == "abc-1_2.x"
    for unsafe in ("../etc", "a/b", "a b", "..", ".hidden", "x" * 200, "ü"):
        d = job_dir(unsafe)
        assert d.startswith("job-") and validate_name(d) == d
    assert job_dir("a/b") != job_dir("a:b")


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("172.16.0.1", "private"),
    ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"), ("100.64.0.1", "not globally routable"), ("::1", "loopback"), ("::", "unspecified"),
    ("fe80::1", "link-local"), ("fc00::1", "private"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::", "loopback"), ("64:ff9b::a00:1", "private"),
    ("ff02::1", "multicast"),
])
def test_non_global_addresses_refused(address, kind):
    reason = AllowList.parse([]).refusal("h", address)
    assert reason and kind in reason


def test_allow_list_matching():
    allow = AllowList.parse(["127.0.0.0/8", "::1", "Sim.Local.", " ", "10.2.3.4"])
    assert allow.refusal("x", "127.9.9.9") is None
    assert allow.refusal("x", "::ffff:127.0.0.1") is None  # mapped form of an allowed address
    assert allow.refusal("x", "::1") is None
    assert allow.refusal("sim.local", "192.168.1.1") is None  # an allowed name covers its addresses
    assert allow.refusal("x", "10.2.3.4") is None
    assert "private" in allow.refusal("x", "10.2.3.5")
    assert AllowList.parse([]).refusal("example.com", "93.184.216.34") is None
    assert AllowList.parse("127.0.0.1, 10.0.0.0/8") == AllowList.parse(["10.0.0.0/8", "127.0.0.1"])
    with pytest.raises(ConfigError, match="KIE_DOWNLOAD_ALLOW_HOSTS.*'10.0.0.0/33'"):
        AllowList.parse(["10.0.0.0/33"])


def test_sniff():
    assert [sniff(b[:12]) for b in (PNG, JPEG, GIF, WEBP)] == ["png", "jpg", "gif", "webp"]
    assert sniff(HTML[:12]) is None and sniff(b"") is None and sniff(b"RIFF\0\0\0\0WAVE") is None


def test_bad_arguments(store):
    with pytest.raises(ValueError, match="expected_type"):
        fetch_to_storage("http://h/x", store, "x.png", expected_type="image/svg+xml")
    with pytest.raises(ValueError, match="max_bytes"):
        fetch_to_storage("http://h/x", store, "x.png", max_bytes=0)


# --- storage ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../b", "a//b", "a/./b", "", "a b", "a\\b", "ü.png",
                                  "a/", "x" * 2000])
def test_storage_rejects_unsafe_names(store, name):
    with pytest.raises(ValueError):
        store.path_for(name)
    with pytest.raises(ValueError):
        store.open_writer(name)


def test_storage_atomic_write_and_cleanup(tmp_path):
    store = LocalStorage(tmp_path / "root")
    assert not os.path.exists(store.root)  # nothing is created until a write
    with store.open_writer("a/b/c.bin") as f:
        f.write(b"one")
    with pytest.raises(RuntimeError):
        with store.open_writer("a/b/c.bin") as f:
            f.write(b"partial")
            raise RuntimeError("fail mid-write")
    with open(store.path_for("a/b/c.bin"), "rb") as f:
        assert f.read() == b"one"
    with pytest.raises(RuntimeError):
        with store.open_writer("new/dir/d.bin") as f:
            f.write(b"partial")
            raise RuntimeError("fail mid-write")
    assert files_in(store) == ["a/b/c.bin"]
    assert sorted(os.listdir(store.root)) == ["a"]


def test_storage_from_settings(tmp_path):
    from worker.settings import Settings

    store = storage_from_settings(Settings.from_env({"KIE_STORAGE_DIR": str(tmp_path / "out")}))
    assert isinstance(store, LocalStorage) and store.root == str(tmp_path / "out")
    assert store.variable == "KIE_STORAGE_DIR"
