"""``SimConfig``: every knob of the simulator, with its checks and defaults.

One dataclass is the single source of truth for the constructor, the CLI flags
(``cli.py`` derives one flag per field) and ``POST /_sim/config``.  Each field has a
coercer in ``_COERCERS`` that accepts the natural JSON/CLI spellings and raises
``ConfigError`` naming the knob.  Secrets (``api_key``, ``hmac_key``) are masked in
``public_dict()`` and never quoted in an error.

``api_key`` is a tuple of keys, one account each (own rate limit windows, own credit
balance); a single string, a comma-separated string or a list of either are accepted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ConfigError
from .ratelimit import parse_rate_limit

SECRET_KNOBS = ("api_key", "hmac_key")
RATE_LIMIT_STYLES = ("body", "http", "mixed")
ERROR_STYLES = ("body", "http")
MSG_KEYS = ("msg", "message")


def _help(text: str, **extra: Any) -> dict:
    return {"help": text, **extra}


@dataclass
class SimConfig:
    """Knobs of the simulator.  Durations and delays are in seconds."""

    # --- access -----------------------------------------------------------------------------
    api_key: tuple[str, ...] = field(default=("kiesim-key",), metadata=_help(
        "Bearer key(s) accepted, one account each; repeat the flag and/or separate keys with commas",
        multiple=True))
    hmac_key: str | None = field(default=None, metadata=_help(
        "webhookHmacKey: when set, callbacks carry X-Webhook-Timestamp/X-Webhook-Signature"))
    public_url: str | None = field(default=None, metadata=_help(
        "base URL put in result URLs (default: the URL the request came in on)"))
    # --- task timing and outcome --------------------------------------------------------------
    duration: float = field(default=2.0, metadata=_help("seconds from create to success/fail"))
    duration_jitter: float = field(default=0.0, metadata=_help(
        "each task's duration is duration +/- uniform(jitter), never below 0"))
    fail_rate: float = field(default=0.0, metadata=_help(
        "fraction 0..1 of tasks that fail (failCode 500, failMsg 'internal error')"))
    seed: int | None = field(default=None, metadata=_help("seed of the random choices"))
    # --- createTask behaviour -----------------------------------------------------------------
    rate_limit: str = field(default="20/10s", metadata=_help(
        "accepted creates per key in any window, 'N/Ws' or 'off'"))
    rate_limit_style: str = field(default="body", metadata=_help(
        "429 as HTTP 200 + body code (body), HTTP 429 (http), or alternating (mixed)",
        choices=RATE_LIMIT_STYLES))
    retry_after: float | str | None = field(default=None, metadata=_help(
        "seconds for a Retry-After header on 429s, 'auto' (time until a slot frees), or unset"))
    status_rate_limit: str = field(default="off", metadata=_help(
        "recordInfo calls per key in any window, 'N/Ws' or 'off' (upstream: about 10/1s)"))
    credits: float = field(default=1_000_000.0, metadata=_help(
        "starting balance of every account (setting it at runtime resets every balance; "
        "one account: POST /_sim/accounts)"))
    credits_per_task: float = field(default=4.0, metadata=_help("cost of a successful task"))
    maintenance: bool = field(default=False, metadata=_help("answer createTask with code 455"))
    create_delay: float = field(default=0.0, metadata=_help(
        "seconds to wait before answering createTask (the task is still created)"))
    error_style: str = field(default="body", metadata=_help(
        "non-429 errors as HTTP 200 + body code (body) or HTTP status = code (http)",
        choices=ERROR_STYLES))
    create_msg_key: str = field(default="msg", metadata=_help(
        "key of the text in createTask success bodies ('message' in one doc example)",
        choices=MSG_KEYS))
    strict_input: bool = field(default=False, metadata=_help(
        "reject input fields the model does not list (code 422)"))
    sparse_records: bool = field(default=False, metadata=_help(
        "omit failCode/failMsg/costTime/completeTime from unfinished recordInfo data instead of null"))
    small_images: bool = field(default=False, metadata=_help(
        "tiny fast result images (short side image_short_side) instead of realistic ones "
        "(long side image_long_side, PNG 1-2 MB)"))
    image_short_side: int = field(default=64, metadata=_help("shortest side of small images, px"))
    image_long_side: int = field(default=1024, metadata=_help("longest side of realistic images, px"))
    # --- callbacks ----------------------------------------------------------------------------
    callback_timeout: float = field(default=15.0, metadata=_help(
        "seconds the receiver has to answer 2xx before the attempt counts as failed"))
    callback_retries: int = field(default=3, metadata=_help("retries after a failed delivery"))
    callback_retry_delay: float = field(default=1.0, metadata=_help(
        "backoff before retry k is delay * 2**(k-1)"))
    duplicate_callbacks: int = field(default=0, metadata=_help("extra deliveries of every callback"))
    duplicate_rate: float = field(default=0.0, metadata=_help(
        "fraction 0..1 of tasks whose callback is delivered once more (on top of duplicate_callbacks)"))
    early_callback: bool = field(default=False, metadata=_help(
        "complete every task at once and deliver its callback before the createTask response"))
    early_rate: float = field(default=0.0, metadata=_help(
        "fraction 0..1 of tasks completed at once, callback delivered before the createTask response"))
    late_callback_delay: float = field(default=0.0, metadata=_help(
        "seconds between completion and every callback"))
    late_rate: float = field(default=0.0, metadata=_help(
        "fraction 0..1 of tasks whose callback comes late_delay seconds later still"))
    late_delay: float = field(default=90.0, metadata=_help(
        "extra seconds before the callback of a task picked by late_rate (e.g. past a client's "
        "wait for callbacks, so it polls first)"))
    lose_callbacks: float = field(default=0.0, metadata=_help("fraction 0..1 of callbacks never sent"))
    variant_fields: float = field(default=0.0, metadata=_help(
        "true/false or fraction 0..1 of callbacks using creditsConsumed, task_id and a top-level taskId"))
    callback_cost_ms: bool = field(default=False, metadata=_help("costTime in callbacks in ms, not seconds"))
    fail_callback_code: int = field(default=501, metadata=_help(
        "body code of failure callbacks (501; 400 and 500 also seen)"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce_knob(f.name, getattr(self, f.name)))

    @property
    def rate(self) -> tuple[int, float] | None:
        """``rate_limit`` parsed: ``(limit, window_seconds)`` or ``None`` when off."""
        return parse_rate_limit(self.rate_limit)

    @property
    def status_rate(self) -> tuple[int, float] | None:
        return parse_rate_limit(self.status_rate_limit)

    def update(self, changes: dict) -> None:
        """Apply ``{knob: value}`` all-or-nothing; raises ``ConfigError`` naming the first bad knob."""
        if not isinstance(changes, dict):
            raise ConfigError("<body>", f"expected a JSON object of knob values, got {type(changes).__name__}")
        coerced = {name: coerce_knob(name, value) for name, value in changes.items()}
        for name, value in coerced.items():
            setattr(self, name, value)

    def public_dict(self) -> dict:
        """All knobs, secrets replaced by ``"***"`` (or null when unset)."""
        out = dataclasses.asdict(self)
        for name in SECRET_KNOBS:
            out[name] = "***" if out[name] else None
        return out

    def __repr__(self) -> str:  # the dataclass repr would show the keys
        return "SimConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.public_dict().items()) + ")"


# ---------------------------------------------------------------------------------------------
# coercers: value from JSON or a CLI string -> checked value


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true or false, got {value!r}")


def _to_float(name: str, value: Any, *, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool):
        raise ConfigError(name, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"expected a number, got {value!r}") from None
    if number != number or number < low or (high is not None and number > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ConfigError(name, f"must be {bounds}, got {value!r}")
    return number


def _to_int(name: str, value: Any, *, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool):
        raise ConfigError(name, f"expected an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"expected an integer, got {value!r}") from None
    if isinstance(value, float) and value != number:
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(name, f"must be {bounds}, got {value!r}")
    return number


def _optional(inner: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def coerce(name: str, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return inner(name, value)
    return coerce


def _to_str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(name, "expected a non-empty string")
    return value


def _to_api_keys(name: str, value: Any) -> tuple[str, ...]:
    """``"k"``, ``"k1,k2"``, ``["k1,k2", "k3"]`` -> ``("k1", "k2", "k3")``; never quotes a key in an error."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(name, "expected a key or a non-empty list of keys")
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(name, f"expected keys as strings, got a {type(item).__name__}")
        for part in item.split(","):
            key = part.strip()
            if not key:
                raise ConfigError(name, "an empty key (check for stray commas)")
            if any(ch.isspace() for ch in key):
                raise ConfigError(name, "a key contains whitespace")
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def coerce(name: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(name, f"expected one of {', '.join(choices)}, got {value!r}")
        return value
    return coerce


def _to_rate(name: str, value: Any) -> str:
    try:
        parse_rate_limit(value)
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None
    return value.strip()


def _to_fraction_or_bool(name: str, value: Any) -> float:
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in (
            "true", "false", "yes", "no", "on", "off")):
        return 1.0 if _to_bool(name, value) else 0.0
    return _to_float(name, value, high=1.0)


def _to_retry_after(name: str, value: Any) -> float | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return _to_float(name, value)


def _to_url(name: str, value: Any) -> str:
    text = _to_str(name, value)
    if not text.startswith(("http://", "https://")):
        raise ConfigError(name, f"expected an http(s) URL, got {value!r}")
    return text.rstrip("/")


_COERCERS: dict[str, Callable[[str, Any], Any]] = {
    "api_key": _to_api_keys,
    "hmac_key": _optional(_to_str),
    "public_url": _optional(_to_url),
    "duration": _to_float,
    "duration_jitter": _to_float,
    "fail_rate": lambda n, v: _to_float(n, v, high=1.0),
    "seed": _optional(_to_int),
    "rate_limit": _to_rate,
    "rate_limit_style": _choice(*RATE_LIMIT_STYLES),
    "retry_after": _optional(_to_retry_after),
    "status_rate_limit": _to_rate,
    "credits": _to_float,
    "credits_per_task": _to_float,
    "maintenance": _to_bool,
    "create_delay": _to_float,
    "error_style": _choice(*ERROR_STYLES),
    "create_msg_key": _choice(*MSG_KEYS),
    "strict_input": _to_bool,
    "sparse_records": _to_bool,
    "small_images": _to_bool,
    "image_short_side": lambda n, v: _to_int(n, v, low=8),
    "image_long_side": lambda n, v: _to_int(n, v, low=64, high=2048),
    "callback_timeout": lambda n, v: _to_float(n, v, low=0.001),
    "callback_retries": _to_int,
    "callback_retry_delay": _to_float,
    "duplicate_callbacks": _to_int,
    "duplicate_rate": lambda n, v: _to_float(n, v, high=1.0),
    "early_callback": _to_bool,
    "early_rate": lambda n, v: _to_float(n, v, high=1.0),
    "late_callback_delay": _to_float,
    "late_rate": lambda n, v: _to_float(n, v, high=1.0),
    "late_delay": _to_float,
    "lose_callbacks": lambda n, v: _to_float(n, v, high=1.0),
    "variant_fields": _to_fraction_or_bool,
    "callback_cost_ms": _to_bool,
    "fail_callback_code": lambda n, v: _to_int(n, v, low=100),
}


def knob_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SimConfig)]


def coerce_knob(name: str, value: Any) -> Any:
    """Check and normalise one knob value; ``ConfigError`` for an unknown knob or a bad value."""
    coercer = _COERCERS.get(name)
    if coercer is None:
        raise ConfigError(name, "unknown knob (known: " + ", ".join(knob_names()) + ")")
    return coercer(name, value)
