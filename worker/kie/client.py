"""The kie.ai HTTP client: the one choke point for every upstream call.

Every request goes through :meth:`KieClient._request`, which sets the timeout, the User-Agent and
the bearer header, and turns every answer (HTTP status *and* the body's ``code``, which kie.ai
often sends inside HTTP 200) into a parsed result or one typed error from ``worker.errors``.
Retries are not done here: the submit policy (``worker.jobs.submission``) decides, because only it
knows whether a repeat could bill twice.  No secret ever reaches an error message.
"""

from __future__ import annotations

import email.utils
import time

import requests

from ..errors import (FeatureDisabled, InsufficientCredits, MalformedResponse, NotFound, RateLimited,
                     RetryableUpstreamError, TransportError, Unauthorized, UpstreamError,
                     UpstreamValidationError, UsageCapExceeded)
from ..redact import redact
from ..version import user_agent
from .schemas import envelope, parse_create_response, parse_record

_PERMANENT = {401: Unauthorized, 402: InsufficientCredits, 404: NotFound, 422: UpstreamValidationError,
              433: UsageCapExceeded, 505: FeatureDisabled}


def _retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), or None."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_for(code: int | None, msg: str, http_status: int | None, retry_after: float | None) -> UpstreamError:
    """The typed error for an upstream code (body code first, HTTP status when the body has none)."""
    if code == 429:
        return RateLimited(code, msg, http_status, retry_after)
    if code in _PERMANENT:
        return _PERMANENT[code](code, msg, http_status, retry_after)
    if code in (455, 500) or (code is not None and 500 <= code < 600) or code is None:
        return RetryableUpstreamError(code, msg, http_status, retry_after)
    return UpstreamError(code, msg, http_status, retry_after)


class KieClient:
    """Talks to ``base_url`` with ``api_key``.  One ``requests.Session`` per client (per process)."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"KieClient({self.base_url!r})"

    # -- the choke point -------------------------------------------------------------------
    def _request(self, method: str, path: str, *, json_body=None, params=None) -> dict:
        """Send one request; return the parsed body of a ``code: 200`` answer or raise a typed error."""
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self._api_key}", "User-Agent": user_agent(),
                   "Accept": "application/json"}
        try:
            response = self.session.request(method, url, json=json_body, params=params, headers=headers,
                                            timeout=self.timeout)
        except requests.ConnectionError as exc:
            # A refused connection never reached kie.ai; a reset/aborted one may have.
            sent = not _connect_refused(exc)
            raise TransportError(self._clean(f"{type(exc).__name__}: {exc}"), sent) from None
        except requests.Timeout as exc:
            sent = not isinstance(exc, requests.ConnectTimeout)
            raise TransportError(self._clean(f"{type(exc).__name__}: {exc}"), sent) from None
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema) as exc:
            # refused while preparing the request: nothing left this process
            raise TransportError(self._clean(f"{type(exc).__name__}: {exc}"), False) from None
        except requests.RequestException as exc:
            raise TransportError(self._clean(f"{type(exc).__name__}: {exc}"), True) from None

        retry_after = _retry_after(response)
        try:
            body = response.json()
        except ValueError:
            text = self._clean(response.text[:200])
            if response.status_code == 429:
                raise RateLimited(429, text or "rate limited", response.status_code, retry_after) from None
            if response.status_code >= 400:
                raise error_for(response.status_code, text or response.reason, response.status_code,
                                retry_after) from None
            raise MalformedResponse(None, f"answer is not JSON: {text!r}", response.status_code) from None
        env = envelope(body)
        code = env.code if env.code is not None else (response.status_code if response.status_code >= 400 else None)
        if code == 200 and response.status_code < 400:
            return body
        if code is None:
            raise MalformedResponse(None, "answer has no 'code'", response.status_code)
        raise error_for(code, self._clean(env.msg or ""), response.status_code, retry_after)

    def _clean(self, text: str) -> str:
        # the key as written, and as Python's repr escapes it inside messages
        escaped = self._api_key.encode("unicode_escape").decode("ascii", "replace")
        return redact(text, [self._api_key, escaped, repr(self._api_key)[1:-1]])

    # -- endpoints -------------------------------------------------------------------------
    def create_task(self, body: dict) -> str:
        """POST createTask with an already-validated body; returns the taskId."""
        answer = self._request("POST", "/api/v1/jobs/createTask", json_body=body)
        return parse_create_response(answer).task_id

    def record_info(self, task_id: str):
        """GET recordInfo; returns a ``worker.kie.schemas.Outcome``.  Unknown task → ``NotFound``."""
        try:
            answer = self._request("GET", "/api/v1/jobs/recordInfo", params={"taskId": task_id})
        except UpstreamValidationError as exc:
            if "null" in (exc.msg or "").lower():
                raise NotFound(404, exc.msg, exc.http_status) from None
            raise
        return parse_record(answer)

    def credits(self) -> float:
        """GET the account's remaining credits."""
        answer = self._request("GET", "/api/v1/chat/credit")
        data = answer.get("data")
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise MalformedResponse(None, f"credit: expected a number in 'data', got {type(data).__name__}")
        return float(data)


def _connect_refused(exc: Exception) -> bool:
    text = str(exc)
    return "Connection refused" in text or "NewConnectionError" in text or "Name or service not known" in text
