"""Log output of every process: one JSON object per line, or readable text on a terminal (structlog).

``KIE_LOG_FORMAT`` (``worker.settings``) is ``json``, ``text`` or unset: unset means JSON when stderr is
not a terminal (a supervisor, a container, a file) and text on a terminal.  JSON lines carry ``time``,
``level``, ``logger``, ``event`` (what happened: the name passed as ``extra={"event": ...}``, else the
logger's last part), ``message`` and, when known, ``job_id``, ``upstream_task_id``, ``celery_task_id`` and
``celery_task``.  The job and task fields come from a context bound per Celery task (:func:`bind`, set
by the worker's ``task_prerun`` signal in ``worker.celery_app``) or passed in ``extra``.

Secrets: :func:`install` puts ``worker.redact``'s filter on the handlers first (it rewrites message and
traceback), the JSON takes the traceback from the redacted text, and the finished line goes through the
same redaction once more (values passed in ``extra`` are covered too).  Called by Celery's logging
signals (worker, beat) and by the webhook app; nothing happens at import time.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Iterable

from . import task_names
from .redact import RedactingFilter, install_log_redaction

FORMATS = ("json", "text")
_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar("kie_log_context", default={})
_FIELDS = ("job_id", "upstream_task_id", "celery_task_id", "celery_task")
# event names of the records of other libraries' loggers (ours: the logger's last part, or extra={"event": ...})
_EVENTS = {"celery.worker.strategy": "task_received", "celery.app.trace": "task_finished",
           "celery.apps.worker": "worker", "celery.worker.consumer.connection": "broker_connected",
           "celery.beat": "beat", "gunicorn.error": "gunicorn", "gunicorn.access": "http_request",
           "py.warnings": "python_warning"}


def resolve(fmt: str | None, stream=None) -> str:
    """``json`` or ``text``: ``fmt`` if given, else JSON unless ``stream`` (stderr) is a terminal."""
    if fmt:
        return fmt
    stream = stream if stream is not None else sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


# -- context ------------------------------------------------------------------------------------

def bind(**fields) -> None:
    """Add fields (``job_id``, ``upstream_task_id`` ...) to every record logged from here on in this context."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})


def clear() -> None:
    _CONTEXT.set({})


def job_id_of(task_name: str, args, kwargs, task_id: str | None) -> str | None:
    """The job a task of ours works on, from its arguments (no Redis read)."""
    args, kwargs = list(args or ()), dict(kwargs or {})
    if task_name == task_names.GENERATE:
        job_id = kwargs.get("job_id", args[2] if len(args) > 2 else None)
        return job_id if isinstance(job_id, str) and job_id else task_id
    if task_name in (task_names.SUBMIT, task_names.CHECK, task_names.COMPLETE):
        job_id = kwargs.get("job_id", args[0] if args else None)
        return job_id if isinstance(job_id, str) else None
    if task_name == task_names.DOWNLOAD:
        result = kwargs.get("result", args[0] if args else None)
        return result.get("job_id") if isinstance(result, dict) else None
    return None


def bind_task(task_name: str, task_id: str | None, args, kwargs) -> None:
    """Bind the context of one Celery task run (called from ``task_prerun``)."""
    clear()
    fields = {"celery_task_id": task_id, "celery_task": task_name,
              "job_id": job_id_of(task_name, args, kwargs, task_id)}
    if task_name == task_names.DOWNLOAD:
        result = kwargs.get("result", (list(args or ()) or [None])[0])
        if isinstance(result, dict):
            fields["upstream_task_id"] = result.get("task_id")
    bind(**fields)


# -- formatting ---------------------------------------------------------------------------------

def _fields(_, __, event_dict: dict) -> dict:
    """Rename structlog's ``event`` (the text) to ``message``; add the event name and the bound context."""
    record: logging.LogRecord = event_dict.get("_record")
    event_dict["message"] = event_dict.pop("event", "")
    for key, value in _CONTEXT.get().items():
        event_dict.setdefault(key, value)
    for key in _FIELDS:
        value = getattr(record, key, None) if record is not None else None
        if value is not None:
            event_dict[key] = value
    explicit = getattr(record, "event", None) if record is not None else None
    name = record.name if record is not None else ""
    event_dict["event"] = explicit if isinstance(explicit, str) else _EVENTS.get(name, name.rsplit(".", 1)[-1])
    if record is not None:
        event_dict["process"] = record.process
    return event_dict


def _exception(_, __, event_dict: dict) -> dict:
    """The traceback as text, taken from the record's ``exc_text``, which the redaction filter already
    formatted and cleaned (structlog would format ``exc_info`` again, unredacted)."""
    record: logging.LogRecord = event_dict.get("_record")
    if record is not None and (record.exc_info or record.exc_text):
        event_dict.pop("exc_info", None)
        event_dict["exception"] = record.exc_text or logging.Formatter().formatException(record.exc_info)
    return event_dict


class JsonFormatter(logging.Formatter):
    """One JSON object per record (structlog's ProcessorFormatter), the finished line redacted once more."""

    def __init__(self, redactor: RedactingFilter):
        super().__init__()
        import structlog

        self.redactor = redactor
        self.inner = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
                _exception,
            ],
            processors=[
                _fields,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.clean(self.inner.format(record))


def early_json(secrets: Iterable[str], fmt: str | None) -> bool:
    """Before Celery's logging set-up: with JSON, a redacted JSON handler on the root logger (Celery
    replaces it with its own) and Python warnings routed to logging.  Returns whether logs are JSON."""
    if resolve(fmt) != "json":
        return False
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    logging.captureWarnings(True)
    install(root, secrets, fmt)
    return True


def install(logger: logging.Logger | None, secrets: Iterable[str], fmt: str | None) -> None:
    """Redact ``secrets`` on ``logger``'s handlers and, for JSON, give them the JSON formatter."""
    logger = logger if logger is not None else logging.getLogger()
    redactor = install_log_redaction(secrets, logger=logger)
    if resolve(fmt) != "json":
        return
    for handler in logger.handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter(redactor))
