"""OpenTelemetry: one trace per job, from the producer's apply_async across the callback gap to the resumed steps.

The test process is an instrumented producer (SDK in-memory exporter); the deployment's workers and webhook run
with ``KIE_OTEL=1`` and write their spans to a JSON-lines file (``KIE_OTEL_JSONL``), read back here.
"""

from __future__ import annotations

import json

import pytest

import secretscan
from harness import unique
from worker.cli.stack import wait_for

otel = pytest.importorskip("opentelemetry.sdk.trace", reason="the [otel] extra is not installed")
from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

JOB_SPANS = ("run/kie.generate", "POST", "kie.callback", "apply_async/kie.complete", "run/kie.complete", "kie.wait",
             "kie.resume", "apply_async/kie.download", "run/kie.download")


@pytest.fixture(scope="module")
def traced(deploy, tmp_path_factory):
    spans = tmp_path_factory.mktemp("otel-spans") / "spans.jsonl"
    with deploy("tracing", callbacks=True, hmac=True, extra_env={"KIE_OTEL": "1", "KIE_OTEL_JSONL": str(spans)},
                start={"concurrency": 2, "user_worker": False}) as dep:
        yield dep, spans


@pytest.fixture
def producer_tracing():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider.get_tracer("kie-queue-tests"), exporter
    finally:
        instrumentor.uninstrument()


def read_spans(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_trace_per_job_across_the_callback_gap(traced, producer_tracing):
    dep, path = traced
    tracer, memory = producer_tracing
    jobs = {}
    for name in ("first", "second"):
        with tracer.start_as_current_span(f"produce {name}") as span:
            res = (dep.generate(unique(f"traced {name}")) | dep.download()).apply_async()
        jobs[name] = (format(span.get_span_context().trace_id, "032x"), res)
    results = {name: res.get(timeout=90) for name, (_, res) in jobs.items()}

    # the producer's publish span is in its trace (the SDK's in-memory exporter of this process)
    published = {format(s.context.trace_id, "032x") for s in memory.get_finished_spans()
                 if s.name == "apply_async/kie.generate"}
    assert published == {trace for trace, _ in jobs.values()}

    def trace_of(trace_id):
        return [s for s in read_spans(path) if s["trace_id"] == trace_id]

    for name, (trace_id, _) in jobs.items():
        wait_for(lambda: {"run/kie.download", "kie.wait"} <= {s["name"] for s in trace_of(trace_id)}, 30,
                 f"spans of the {name} job")
        spans = trace_of(trace_id)
        names = {s["name"] for s in spans}
        assert set(JOB_SPANS) <= names, sorted(names)
        assert {s["service"] for s in spans} == {"kie-queue-worker", "kie-queue-webhook"}
        first = {n: min(s["start"] for s in spans if s["name"] == n) for n in JOB_SPANS}
        # in order: generate, (wait begins at submission), callback, complete, resume, download
        assert first["run/kie.generate"] < first["kie.wait"] < first["kie.callback"] < first["run/kie.complete"]
        assert first["run/kie.complete"] < first["kie.resume"] < first["apply_async/kie.download"] < \
            first["run/kie.download"]
        # the createTask request is a child of kie.generate; the resumed step's publish a child of kie.resume
        by_id = {s["span_id"]: s for s in spans}
        post = next(s for s in spans if s["name"] == "POST")
        assert by_id[post["parent_id"]]["name"] == "run/kie.generate"
        publish = next(s for s in spans if s["name"] == "apply_async/kie.download")
        assert by_id[publish["parent_id"]]["name"] == "kie.resume"
        # the webhook's request span (its own trace: kie.ai sends no trace context) is linked from kie.callback
        callback = next(s for s in spans if s["name"] == "kie.callback")
        assert callback["links"] and callback["links"][0]["trace_id"] != trace_id
        assert callback["attributes"]["kie.job_id"] == results[name]["job_id"]

    # the callback request's span names the route, never the job's token (nor any other secret)
    text = path.read_text()
    assert "/kie/callback/" in text and secretscan.in_text(text) == []

    # one trace per job: the two jobs share no span
    a, b = (set(s["span_id"] for s in trace_of(t)) for t, _ in jobs.values())
    assert a and b and not a & b
