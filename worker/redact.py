"""Keeping secrets out of text: error messages, URLs and log records.

``redact(text, secrets)`` masks known secret values (API key, webhook secrets)
and their URL-quoted forms; ``mask_tokens(text)`` masks every ``token=...``
value (per-job callback tokens, which no list of secrets can name);
``redact_url(url)`` masks what a URL itself carries (a userinfo password,
token/key/signature-like query values) without knowing the secrets;
``install_log_redaction(secrets)`` applies ``redact`` and ``mask_tokens`` to
every log record that reaches the root logger's handlers.

This module holds no secrets and reads no configuration: callers pass the
values (``Settings.secrets()``).  Nothing happens at import time.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

MASK = "***"

# Query parameter names whose values are credentials: access_token, api_key,
# X-Amz-Signature, X-Goog-Credential, sig, client_secret, password ...
_SECRET_PARAM_RE = re.compile(r"token|key|signature|secret|password|passwd|credential|(?:^|[^a-z])sig(?:$|[^a-z])",
                              re.IGNORECASE)
_QUERY_PAIR_RE = re.compile(r"([^&;=]*)=([^&;]*)")
_TOKEN_PAIR_RE = re.compile(r"(\btoken=)[^&\s\"'#]+", re.IGNORECASE)


def _forms(secrets: Iterable[str]) -> list[str]:
    """Every non-empty secret plus its URL-quoted forms, longest first (so a longer match wins)."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        secret = str(secret)
        forms.update((secret, quote(secret, safe=""), quote_plus(secret), quote(secret)))
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every occurrence of each non-empty secret (raw or URL-quoted) replaced by ``***``."""
    if not text:
        return text
    for form in _forms(secrets):
        text = text.replace(form, MASK)
    return text


def mask_tokens(text: str) -> str:
    """Return ``text`` with the value of every ``token=...`` pair replaced by ``***``."""
    return _TOKEN_PAIR_RE.sub(rf"\1{MASK}", text) if text else text


def redact_url(url: str) -> str:
    """Return ``url`` with a userinfo password and credential-like query values replaced by ``***``.

    ``https://u:pw@h/p?X-Amz-Signature=abc&w=1`` becomes ``https://u:***@h/p?X-Amz-Signature=***&w=1``.
    The rest of the URL is kept byte for byte, so it stays useful in an error message.
    A string that does not parse as a URL is returned with only its query-like pairs masked.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + MASK
            netloc = f"{userinfo}@{hostport}"
        query = _mask_query(parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return _mask_query(url)


def _mask_query(query: str) -> str:
    def mask(m: re.Match) -> str:
        name = m.group(1)
        if _SECRET_PARAM_RE.search(unquote_plus(name)):
            return f"{name}={MASK}"
        return m.group(0)

    return _QUERY_PAIR_RE.sub(mask, query)


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record so its message, args, exception and stack text hold no
    secret and no ``token=`` value.

    It never drops a record.  The formatted message replaces ``msg`` (and ``args`` is cleared), so a
    handler formatting the record later sees only redacted text; ``exc_text`` is pre-filled with the
    redacted traceback, which ``logging.Formatter`` uses instead of formatting ``exc_info`` again.
    """

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact these values (empty ones are ignored)."""
        for s in secrets:
            if s and s not in self.secrets:
                self.secrets.append(str(s))

    def clean(self, text: str) -> str:
        return mask_tokens(redact(text, self.secrets))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it for the handler to report
            return True
        record.msg, record.args = self.clean(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True


def install_log_redaction(secrets: Iterable[str], logger: logging.Logger | None = None) -> RedactingFilter:
    """Redact ``secrets`` from every record handled by ``logger`` (default: the root logger).

    The filter goes on the logger itself (records logged directly to it) and on each of its current
    handlers (records propagated from child loggers, which skip the parent logger's filters).  Handlers
    added later are not covered: call this again after adding them.  Calling it again is safe: the
    existing filter is reused and the new secrets are added to it.  Returns the filter.
    """
    logger = logger if logger is not None else logging.getLogger()
    existing = [f for f in logger.filters if isinstance(f, RedactingFilter)]
    flt = existing[0] if existing else RedactingFilter(())
    flt.add(secrets)
    if not existing:
        logger.addFilter(flt)
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
        else:
            for f in handler.filters:
                if isinstance(f, RedactingFilter):
                    f.add(flt.secrets)
    return flt
