"""OpenTelemetry tracing (the optional ``[otel]`` extra): one trace per job, across the callback gap.

Off unless configured: ``KIE_OTEL=1``, or ``OTEL_TRACES_EXPORTER`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` set
(``worker.settings``).  Off, every function here returns at once and nothing of OpenTelemetry is
imported.  On, :func:`setup` (once per process: each Celery pool child, each gunicorn worker) installs a
tracer provider with the configured exporter and the Celery, requests and Flask instrumentations.

The trace of a job: the producer's ``apply_async`` (if the producer is instrumented) → ``run/kie.generate``
→ the createTask request → (the job waits upstream; no process holds it) → the webhook's ``kie.callback``
span → ``run/kie.complete`` → ``kie.resume`` with a ``kie.wait`` span covering the gap → the resumed steps.
The gap is crossed by :func:`carry`, which stores the ``traceparent`` of the running ``kie.generate`` with
its parked waiter, and :func:`resumed` / :func:`job_span`, which continue that context when the job is
completed (by a callback or by a poll that started in another trace, which is then linked).

Secrets: the webhook's request spans have the callback URL's job token masked, and outgoing request
spans have credential-like query values masked (``worker.redact``); no request body or header is recorded.

Exporters (``OTEL_TRACES_EXPORTER``): ``otlp`` (needs ``opentelemetry-exporter-otlp``), ``console``, or
``KIE_OTEL_JSONL=PATH``: every finished span as one JSON line appended to PATH (local debugging, tests).
"""

from __future__ import annotations

import contextlib
import os
import threading

_STATE = {"on": False, "pid": None}
_LOCK = threading.Lock()
_KEY = "traceparent"


def enabled() -> bool:
    return _STATE["on"] and _STATE["pid"] == os.getpid()


def setup(s, service: str, *, flask_app=None) -> bool:
    """Install tracing in this process if the settings ask for it.  Returns whether it is on."""
    if not s.otel:
        return False
    with _LOCK:
        if not enabled():
            _install(s, service)
            _STATE.update(on=True, pid=os.getpid())
    if flask_app is not None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
        # a response hook: the instrumentation sets the URL attributes again after its request hook
        FlaskInstrumentor().instrument_app(flask_app, response_hook=_redact_server_span)
    return True


_URL_ATTRIBUTES = ("http.url", "url.full", "http.target", "url.query")


def _redact_server_span(span, *_) -> None:
    """The callback's URL carries the job's token: mask it in the request span's attributes."""
    from .redact import mask_tokens, redact_url
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, mask_tokens(redact_url(value)))


def _redact_client_span(span, request) -> None:
    """Outgoing URLs (result downloads may be presigned) without credentials in their query."""
    from .redact import redact_url
    attributes = getattr(span, "attributes", None) or {}
    for key in ("http.url", "url.full"):
        if isinstance(attributes.get(key), str):
            span.set_attribute(key, redact_url(attributes[key]))


def _install(s, service: str) -> None:
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME")
                                                        or service}))
    if s.otel_jsonl:
        from .tracing_export import JsonLinesExporter
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(s.otel_jsonl)))
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp" if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                              else "none")
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider, request_hook=_redact_client_span)


def _tracer():
    from opentelemetry import trace
    return trace.get_tracer("kie_queue")


def carry(parked: dict) -> dict:
    """Add the running span's ``traceparent`` to a parked waiter (nothing when tracing is off)."""
    if enabled():
        from opentelemetry.propagate import inject
        carrier: dict = {}
        inject(carrier)
        if _KEY in carrier:
            parked[_KEY] = carrier[_KEY]
    return parked


def _stored_context(parked: dict | None):
    from opentelemetry.propagate import extract
    return extract({_KEY: parked[_KEY]}) if parked and parked.get(_KEY) else None


def _links():
    """A link to the span running now, when it belongs to another trace (a poll, the webhook's request)."""
    from opentelemetry import trace
    current = trace.get_current_span().get_span_context()
    return [trace.Link(current)] if current.is_valid else []


@contextlib.contextmanager
def job_span(name: str, parked: dict | None, **attributes):
    """A span ``name`` in the job's trace (the stored context of ``parked``), linked to the current span."""
    if not enabled() or not parked or not parked.get(_KEY):
        yield
        return
    with _tracer().start_as_current_span(name, context=_stored_context(parked), links=_links(),
                                         attributes={k: v for k, v in attributes.items() if v is not None}):
        yield


@contextlib.contextmanager
def resumed(parked: dict, *, job_id: str, waited_since_ms=None):
    """Around resuming or failing one waiter: ``kie.resume`` in the job's trace, preceded by a ``kie.wait``
    span from the submission (``waited_since_ms``, epoch ms) until now."""
    if not enabled() or not parked.get(_KEY):
        yield
        return
    import time
    context = _stored_context(parked)
    if waited_since_ms not in (None, "", "0", 0):
        start = int(float(waited_since_ms)) * 1_000_000
        span = _tracer().start_span("kie.wait", context=context, start_time=start,
                                    attributes={"kie.job_id": job_id})
        span.end(end_time=max(start, time.time_ns()))
    with job_span("kie.resume", parked, **{"kie.job_id": job_id}):
        yield
