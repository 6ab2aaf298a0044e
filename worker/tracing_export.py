"""A span exporter (OpenTelemetry SDK ``SpanExporter``) writing each finished span as one JSON line to a file.

Used when ``KIE_OTEL_JSONL`` names a file: every process of a deployment appends to it (one ``write`` per
span, in append mode, so lines of several processes do not interleave), for local debugging and for the
tests, which read the spans of real workers and webhooks back.  Imported only when tracing is on.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


def span_record(span: ReadableSpan) -> dict:
    ctx, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent else None,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "service": span.resource.attributes.get("service.name"),
        "pid": os.getpid(),
        "links": [{"trace_id": format(link.context.trace_id, "032x"), "span_id": format(link.context.span_id, "016x")}
                  for link in span.links],
        "attributes": {k: v if isinstance(v, (str, int, float, bool)) else str(v)
                       for k, v in (span.attributes or {}).items()},
        "status": span.status.status_code.name,
    }


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str):
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(json.dumps(span_record(s)) + "\n" for s in spans).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None
