"""marshmallow schemas for everything that crosses a boundary to or from kie.ai.

- ``inputs``: per-model ``input`` schemas and ``validate_input`` (outbound).
- ``create``: the ``createTask`` request body (outbound).
- ``upstream``: kie.ai's answers and callbacks (inbound), read into ``Outcome``.
- ``outcome``: the ``Outcome`` value object.
- ``fields`` / ``inbound_fields`` / ``jsonsafe``: field types (outbound, inbound) and bounded JSON checks.
"""

from .create import CreateTaskRequest, build_create_body
from .inputs import (IMAGE_SIZES, RESOLUTIONS, InputSchema, NanoBananaEditInput, NanoBananaInput,
                     NanoBananaProInput, known_models, register_model, schema_for,
                     validate_input)
from .outcome import COST_MS_THRESHOLD, Outcome
from .upstream import (CallbackSchema, CreateAccepted, Envelope, EnvelopeSchema, TaskDataSchema, envelope,
                       parse_callback, parse_create_response, parse_record)

__all__ = [
    "COST_MS_THRESHOLD", "IMAGE_SIZES", "RESOLUTIONS",
    "CallbackSchema", "CreateAccepted", "CreateTaskRequest", "Envelope", "EnvelopeSchema", "InputSchema",
    "NanoBananaEditInput", "NanoBananaInput", "NanoBananaProInput", "Outcome", "TaskDataSchema",
    "build_create_body", "envelope", "known_models", "parse_callback",
    "parse_create_response", "parse_record", "register_model", "schema_for", "validate_input",
]
