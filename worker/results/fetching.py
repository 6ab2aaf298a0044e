"""Copying result images from URLs into storage, safely: the rules behind ``kie.download``.

(Not named ``download``: a submodule of that name would shadow the task ``worker.download``.)

``fetch_to_storage`` downloads one URL; ``download_result`` stores every URL of a finished job's result
as ``<job_id>/<index>.<ext>``.  Before anything is written they refuse:

* any scheme but http/https, and any host that resolves to a private, loopback, link-local, multicast,
  reserved, unspecified or otherwise non-global address (IPv4-mapped, 6to4 and NAT64 IPv6 forms
  included), unless the host name or the address is in ``allow_hosts`` (names, IPs or CIDRs);
* more than ``max_redirects`` redirects (followed by hand, every hop checked like the first);
* bodies over ``max_bytes`` (by Content-Length up front, and while streaming), and downloads not
  finished within ``timeout`` seconds in total;
* anything that is not a PNG, JPEG, WEBP or GIF by its first bytes, or whose bytes contradict the
  image type its Content-Type claims (an HTML page served as image/png).

DNS rebinding: every hop is resolved and checked before the request is sent (for a clear error),
and the connection itself resolves again, checks every address again and connects only to an
address it has just checked (a urllib3 connection subclass, ``_CheckedConnectionMixin``).  So the
address connected to is always a checked one, at the cost of two lookups per new connection.
Name resolution itself (``getaddrinfo``) is not bounded by ``timeout``.

Environment proxies, ``.netrc`` and ``REQUESTS_CA_BUNDLE`` are ignored (a proxy would resolve and
connect on our behalf, defeating the address check); TLS certificates are verified with certifi.

Every failure raises ``DownloadError(redacted_url, reason)``; a refused or failed download leaves no
file or object (``Storage.store`` commits atomically; the body streams through, never held whole).
A storage failure raises ``DownloadError`` too, ``transient`` when the storage said a retry may help.
Storage itself lives in ``worker.results.storage``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from typing import Iterable
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from ..errors import DownloadError, InvalidInput, StorageError
from .netguard import AllowList, CheckedAdapter, Refused as _Refused, checked_addresses as _checked_addresses
from .netguard import download_session  # noqa: F401  (part of this module's interface)
from ..redact import redact_url
from ..version import user_agent
from .storage import Storage


class _Unavailable(_Refused):
    """The server answered 5xx or 429: the same download may succeed later."""


DEFAULT_MAX_BYTES = 50 * 1024 * 1024
CHUNK_SIZE = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Image types we store, keyed by file extension.
MIME_BY_EXT = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
_EXT_BY_MIME = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg", "image/pjpeg": "jpg",
                "image/webp": "webp", "image/gif": "gif"}
_SNIFF_BYTES = 12
_JOB_DIR_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


# --- fetching --------------------------------------------------------------------------------------

def fetch_to_storage(url: str, storage: Storage, name: str, *, allow_hosts: Iterable[str] = (),
                     max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 30.0, max_redirects: int = 3,
                     expected_type: str | None = None, session: requests.Session | None = None) -> dict:
    """Download ``url`` into ``storage`` under ``name``; return its ``files[]`` entry.

    The entry is ``{url, path, uri, sha256, bytes, content_type}`` (``path`` is None unless the storage
    is a local folder) plus ``presigned_url`` when the storage makes them.

    ``name`` is a storage name (see ``worker.results.storage.validate_name``); ``{ext}`` in it is replaced by the
    extension of the type found (``png``, ``jpg``, ``webp``, ``gif``).  ``timeout`` bounds the whole
    download, redirects included (seconds).  ``expected_type`` (``"png"`` or ``"image/png"`` ...) refuses
    any other type.  ``session`` must come from ``download_session()`` with the same ``allow_hosts``; only
    its connections are used (never its cookies, auth or headers).  ``content_type`` in the result is the
    canonical MIME type of the bytes stored.  Raises ``DownloadError`` (URL redacted) on any refusal.
    """
    if max_bytes < 1 or timeout <= 0 or max_redirects < 0:
        raise ValueError(f"need max_bytes >= 1, timeout > 0, max_redirects >= 0; "
                         f"got {max_bytes!r}, {timeout!r}, {max_redirects!r}")
    expected = _ext_for(expected_type) if expected_type else None
    if expected_type and not expected:
        raise ValueError(f"expected_type must be one of {sorted(MIME_BY_EXT)} or their MIME types, "
                         f"got {expected_type!r}")
    allow = AllowList.parse(allow_hosts)
    if session is not None:
        _check_session(session, allow)
    safe_url = redact_url(str(url))
    own_session = session is None
    if own_session:
        session = download_session(allow_hosts=allow_hosts)
    deadline = time.monotonic() + timeout
    try:
        response = _open(str(url), session, allow, deadline=deadline, max_redirects=max_redirects)
        try:
            return _store(response, storage, name, url=url, max_bytes=max_bytes, deadline=deadline,
                          expected=expected)
        finally:
            response.close()
    except _Refused as e:
        raise DownloadError(safe_url, str(e), isinstance(e, _Unavailable)) from None
    except (requests.RequestException, Urllib3Error) as e:
        if _is_timeout(e) or time.monotonic() >= deadline:
            raise DownloadError(safe_url, f"timed out (the limit is {timeout:g} s for the whole download)",
                                True) from None
        raise DownloadError(safe_url, f"transport error: {_describe(e)}", True) from None
    except StorageError as e:
        raise DownloadError(safe_url, f"could not store it: {e.message}", e.transient) from None
    except ValueError as e:  # an unsafe storage name
        raise DownloadError(safe_url, str(e)) from None
    finally:
        if own_session:
            session.close()


def _check_session(session: requests.Session, allow: AllowList) -> None:
    for prefix in ("http://", "https://"):
        adapter = session.get_adapter(prefix)
        if not isinstance(adapter, CheckedAdapter) or adapter.allow_list != allow:
            raise ValueError(f"session must come from download_session() with the same allow_hosts, "
                             f"got {prefix} adapter {adapter!r}")


def _open(url: str, session: requests.Session, allow: AllowList, *, deadline: float,
          max_redirects: int) -> requests.Response:
    """Send GET, following at most ``max_redirects`` redirects, each hop checked; return the 200 response."""
    current = url
    for hop in range(max_redirects + 1):
        via = f"redirected to {redact_url(current)}: " if hop else ""
        try:
            _check_url(current, allow)
        except _Refused as e:
            raise _Refused(via + str(e)) from None
        adapter = session.get_adapter(current)
        if not isinstance(adapter, CheckedAdapter) or adapter.allow_list != allow:
            raise _Refused(f"{via}the session's adapter for this URL does not enforce this allow-list")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Refused(f"{via}timed out before the request was sent")
        request = requests.Request("GET", current, headers={
            "User-Agent": user_agent(), "Accept": "image/png, image/jpeg, image/webp, image/gif, */*;q=0.1",
            "Accept-Encoding": "identity"}).prepare()
        try:
            response = adapter.send(request, stream=True, timeout=(remaining, remaining), verify=True)
        except _Refused as e:  # the connection-time re-check (the name now resolves elsewhere)
            raise _Refused(f"{via}{e} (at connect time)") from None
        if response.status_code in REDIRECT_STATUSES:
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise _Refused(f"{via}HTTP {response.status_code} redirect without a Location header")
            current = urljoin(current, location)
            continue
        if response.status_code != 200:
            response.close()
            failure = _Unavailable if response.status_code >= 500 or response.status_code == 429 else _Refused
            raise failure(f"{via}HTTP {response.status_code} {response.reason or ''}".rstrip())
        return response
    raise _Refused(f"too many redirects (more than {max_redirects})")


def _check_url(url: str, allow: AllowList) -> None:
    """Refuse a URL that is not http(s) or whose host resolves to a forbidden address."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _Refused(f"malformed URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _Refused(f"only http and https URLs are fetched, got scheme {scheme!r}" if scheme
                       else "not an absolute http(s) URL")
    if not parts.hostname:
        raise _Refused("URL has no host")
    _checked_addresses(parts.hostname, port or (443 if scheme == "https" else 80), allow)


def _store(response: requests.Response, storage: Storage, name: str, *, url: str, max_bytes: int,
           deadline: float, expected: str | None) -> dict:
    """Check type and size while streaming ``response`` into ``storage``; the writer opens only after sniffing."""
    declared_header = response.headers.get("Content-Type", "")
    declared = _ext_for(declared_header)
    length = response.headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise _Refused(f"Content-Length {int(length)} exceeds the limit of {max_bytes} bytes")

    chunks = _timed_chunks(response, deadline)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= _SNIFF_BYTES:
            break
    found = sniff(head)
    if found is None:
        raise _Refused(f"content is not a PNG, JPEG, WEBP or GIF image (Content-Type {declared_header!r}, "
                       f"first bytes {head[:8]!r})")
    if declared and declared != found:
        raise _Refused(f"Content-Type {declared_header!r} but the content is {MIME_BY_EXT[found]}")
    if expected and expected != found:
        raise _Refused(f"expected {MIME_BY_EXT[expected]} but the content is {MIME_BY_EXT[found]}")

    relative_name = name.replace("{ext}", found)
    stored = storage.store(relative_name, _capped(_chain_head(head, chunks), max_bytes),
                           content_type=MIME_BY_EXT[found])
    return stored.file_entry(url)


def _capped(chunks, max_bytes: int):
    """Pass ``chunks`` through, refusing the body once more than ``max_bytes`` have come (the storage then
    commits nothing)."""
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise _Refused(f"body exceeds the limit of {max_bytes} bytes")
        yield chunk


def _chain_head(head: bytes, rest):
    yield head
    yield from rest


def _timed_chunks(response: requests.Response, deadline: float):
    """Yield body chunks, failing once ``deadline`` passes; each socket read waits at most the time left."""
    raw = response.raw
    # read1 returns what has arrived (up to CHUNK_SIZE) instead of waiting for a full chunk, so a
    # body that trickles in a byte at a time still comes back here to check the deadline.
    read = raw.read1 if hasattr(raw, "read1") else functools.partial(raw.read, decode_content=True)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise requests.Timeout("download deadline passed")
        _limit_read_wait(response, remaining)
        chunk = read(CHUNK_SIZE)
        if not chunk:
            return
        yield chunk


def _limit_read_wait(response: requests.Response, seconds: float) -> None:
    """Best effort: shorten the socket timeout so one read cannot outlast the deadline.

    Without it (another urllib3 layout), a read still ends after the per-read timeout given at
    request time, so the download ends within twice ``timeout`` at worst.
    """
    try:
        response.raw.connection.sock.settimeout(max(seconds, 0.001))
    except AttributeError:
        pass


def sniff(head: bytes) -> str | None:
    """The image type (``png``, ``jpg``, ``webp``, ``gif``) that ``head``, a file's first 12 bytes, starts."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _ext_for(type_name: str | None) -> str | None:
    """``png``/``image/png``/``image/png; charset=x`` -> ``png``; anything else -> None."""
    if not type_name:
        return None
    t = type_name.split(";", 1)[0].strip().lower()
    if t in MIME_BY_EXT:
        return t
    if t == "jpeg":
        return "jpg"
    return _EXT_BY_MIME.get(t)


def _is_timeout(e: BaseException) -> bool:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (requests.Timeout, Urllib3Timeout, TimeoutError)) and not isinstance(e, NewConnectionError):
            return True
        nested = [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        reason = getattr(e, "reason", None)
        e = reason if isinstance(reason, BaseException) else (nested[0] if nested else e.__cause__)
    return False


def _describe(e: BaseException) -> str:
    """A short transport error text: the innermost cause, with any query string masked."""
    inner = e
    for _ in range(5):
        nested = getattr(inner, "reason", None)
        if not isinstance(nested, BaseException):
            args = [a for a in getattr(inner, "args", ()) if isinstance(a, BaseException)]
            nested = args[0] if args else None
        if nested is None:
            break
        inner = nested
    text = str(inner) or type(inner).__name__
    return redact_url(text)[:300]


# --- a whole job's result --------------------------------------------------------------------------

def job_dir(job_id) -> str:
    """The storage folder of a job: the job id itself when it is a safe name, else ``job-<sha256 prefix>``."""
    text = str(job_id)
    if _JOB_DIR_RE.match(text) and text not in (".", ".."):
        return text
    return "job-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def check_result(result) -> None:
    """Raise ``InvalidInput`` (field ``result``) unless ``result`` is a ``kie.generate`` result dict:
    a ``job_id`` and a ``result_urls`` list of strings."""
    urls = result.get("result_urls") if isinstance(result, dict) else None
    if not isinstance(result, dict) or not result.get("job_id") or not isinstance(urls, list) \
            or not all(isinstance(u, str) for u in urls):
        shape = (f"keys {sorted(result)[:8]}" if isinstance(result, dict) else type(result).__name__)
        raise InvalidInput({"result": [f"expected a kie.generate result dict with job_id and a result_urls "
                                       f"list of strings, got {shape}"]})


def download_result(result: dict, *, storage: Storage, allow_hosts: Iterable[str] = (),
                    max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 30.0,
                    session: requests.Session | None = None) -> dict:
    """Store every URL of ``result["result_urls"]`` as ``<job_id>/<index>.<ext>``; return a copy with ``files``.

    ``files`` lists ``fetch_to_storage``'s dicts in URL order.  ``timeout`` applies to each URL.  Running it
    again for the same job writes the same names, and leaves a file already stored with the same sha256
    untouched, so the task is safe to run twice.
    A result of the wrong shape raises ``InvalidInput``; the first failing URL raises ``DownloadError``; files already stored stay (a retry rewrites them).
    """
    check_result(result)
    urls = result["result_urls"]
    folder = job_dir(result["job_id"])
    own_session = session is None
    if own_session:
        session = download_session(allow_hosts=allow_hosts)
    try:
        files = [fetch_to_storage(u, storage, f"{folder}/{i}.{{ext}}", allow_hosts=allow_hosts,
                                  max_bytes=max_bytes, timeout=timeout, session=session)
                 for i, u in enumerate(urls)]
    finally:
        if own_session:
            session.close()
    return {**result, "files": files}
