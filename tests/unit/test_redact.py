"""Tests of worker.redact: secret masking in text, URLs and log records."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote, quote_plus

import pytest

from worker.redact import RedactingFilter, install_log_redaction, redact, redact_url

SECRET = "sk-live/ab+cd ef"


def test_redact_replaces_raw_and_quoted_forms():
    text = f"key={SECRET} q={quote(SECRET, safe='')} p={quote_plus(SECRET)}"
    out = redact(text, [SECRET])
    assert "ab+cd" not in out and "ab%2Bcd" not in out
    assert out == "key=*** q=*** p=***"


def test_redact_ignores_empty_and_none_and_prefers_longer():
    assert redact("abc abcdef", ["", None, "abc", "abcdef"]) == "*** ***"
    assert redact("nothing here", []) == "nothing here"
    assert redact("", ["x"]) == ""


@pytest.mark.parametrize("url, expected", [
    ("https://user:pw@host.example/p?a=1", "https://user:***@host.example/p?a=1"),
    ("https://h/p?token=abc&width=10", "https://h/p?token=***&width=10"),
    ("https://h/p?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F1&X-Amz-Expires=60",
     "https://h/p?X-Amz-Signature=***&X-Amz-Credential=***&X-Amz-Expires=60"),
    ("https://h/p?sig=abc&design=7&api_key=k&client_secret=s",
     "https://h/p?sig=***&design=7&api_key=***&client_secret=***"),
    ("https://h/p?x=1#frag", "https://h/p?x=1#frag"),
    ("http://[::1]:8080/a?Token=z", "http://[::1]:8080/a?Token=***"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_url_unparseable_still_masks_query():
    assert "abc" not in redact_url("http://[bad/x?token=abc")


@pytest.fixture
def captured():
    """A logger with a handler writing to a buffer, plus a child logger that propagates to it."""
    logger = logging.getLogger("test_redact.parent")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    yield logger, buf
    logger.removeHandler(handler)
    logger.filters.clear()


def test_log_redaction_of_message_args_and_children(captured):
    logger, buf = captured
    install_log_redaction([SECRET], logger=logger)
    logger.info("direct %s", SECRET)
    logging.getLogger("test_redact.parent.child").warning("child sees %r in %s", "x", f"url?k={quote(SECRET, safe='')}")
    out = buf.getvalue()
    assert SECRET not in out and quote(SECRET, safe="") not in out
    assert "INFO direct ***" in out
    assert "WARNING child sees 'x' in url?k=***" in out


def test_log_redaction_of_exception_text(captured):
    logger, buf = captured
    install_log_redaction([SECRET], logger=logger)
    try:
        raise RuntimeError(f"boom with {SECRET}")
    except RuntimeError:
        logger.exception("failed")
    out = buf.getvalue()
    assert "RuntimeError: boom with ***" in out
    assert SECRET not in out


def test_install_twice_reuses_one_filter(captured):
    logger, buf = captured
    first = install_log_redaction(["one-secret"], logger=logger)
    second = install_log_redaction(["two-secret"], logger=logger)
    assert first is second
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
    assert sum(isinstance(f, RedactingFilter) for f in logger.handlers[0].filters) == 1
    logger.info("one-secret two-secret")
    assert buf.getvalue().strip() == "INFO *** ***"


def test_root_logger_default():
    root = logging.getLogger()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    root.addHandler(handler)
    try:
        flt = install_log_redaction(["root-secret-123"])
        logging.getLogger("some.library").error("leaked root-secret-123?")
        assert buf.getvalue().strip() == "leaked ***?"
    finally:
        root.removeHandler(handler)
        root.removeFilter(flt)
        for h in root.handlers:
            h.removeFilter(flt)
