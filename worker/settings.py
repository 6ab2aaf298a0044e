"""Configuration: every environment variable kie-queue reads, parsed and checked in one place.

``Settings.from_env()`` reads ``os.environ`` (or a given mapping) and raises
``ConfigError`` naming the variable and the problem for any malformed value.
``settings()`` caches the process-wide instance; nothing is read at import time.
Secrets are kept out of ``repr()`` so a logged Settings object leaks nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os
import re
import urllib.parse
from typing import Mapping

from .errors import ConfigError

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hour)?\s*$")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0,
                 "hour": 3600.0}


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` events in any window of ``window`` seconds."""

    limit: int
    window: float

    @classmethod
    def parse(cls, text: str, variable: str = "KIE_RATE_LIMIT") -> "RateLimit":
        """Parse ``20/10s``, ``2/s``, ``100/min``, ``5/1.5s`` or ``1000/h``."""
        m = _RATE_RE.match(text or "")
        if not m:
            raise ConfigError(variable, f"expected COUNT/WINDOW like '20/10s', '2/s' or '100/min', got {text!r}")
        count, number, unit = int(m.group(1)), m.group(2), m.group(3)
        if unit is None and not number:
            raise ConfigError(variable, f"missing window unit, got {text!r}")
        window = (float(number) if number else 1.0) * _UNIT_SECONDS[unit]
        if count < 1 or window <= 0:
            raise ConfigError(variable, f"count and window must be positive, got {text!r}")
        return cls(count, window)

    def __str__(self) -> str:
        return f"{self.limit}/{self.window:g}s"


_TENANT_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def tenant_env_suffix(tenant: str) -> str:
    """The ``KIE_API_KEY_<SUFFIX>`` of a tenant: upper-cased, ``-``, ``.`` and ``:`` as ``_``."""
    return re.sub(r"[-.:]", "_", tenant.upper())


def parse_tenant_map(text: str | None, variable: str, *, integer: bool, allow_star: bool) -> dict[str, float]:
    """Parse ``acme=3,beta=1`` (and ``*=10`` when ``allow_star``) into {tenant: positive number}."""
    out: dict[str, float] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise ConfigError(variable, f"expected TENANT=NUMBER items separated by commas, got {item!r}")
        if not (_TENANT_RE.match(name) or (allow_star and name == "*")):
            raise ConfigError(variable, f"tenant must be 1-64 letters, digits or ._:-"
                                        f"{' (or * for every other tenant)' if allow_star else ''}, got {name!r}")
        if name in out:
            raise ConfigError(variable, f"tenant {name!r} is listed twice")
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "whole number" if integer else "number"
            raise ConfigError(variable, f"{name}: expected a {kind}, got {raw!r}") from None
        if not math.isfinite(value) or value <= 0 or value > 1_000_000:
            raise ConfigError(variable, f"{name}: must be a positive number up to 1000000, got {raw!r}")
        out[name] = value
    return out
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._-]+$")
STORAGE_FORMS = "file:///absolute/path, a relative path like ./kie-output, or s3://bucket/prefix"


@dataclasses.dataclass(frozen=True)
class StorageLocation:
    """Where ``kie.download`` keeps files: a local folder (``scheme == "file"``) or an S3 bucket and prefix.

    ``variable`` is the environment variable it came from (``KIE_STORAGE_URL`` or its alias
    ``KIE_STORAGE_DIR``), so start-up checks can name it.  ``path`` is absolute (resolved against the
    current directory when parsed); ``prefix`` has no leading or trailing ``/`` (``""`` for none).
    """

    scheme: str
    path: str | None = None
    bucket: str | None = None
    prefix: str = ""
    variable: str = "KIE_STORAGE_URL"

    @property
    def url(self) -> str:
        """The canonical form: ``file:///abs/path`` or ``s3://bucket/prefix``."""
        if self.scheme == "file":
            return "file://" + urllib.parse.quote(self.path)
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def parse(cls, text: str, variable: str = "KIE_STORAGE_URL") -> "StorageLocation":
        """Parse one of ``file:///abs/path``, ``relative/path``, ``/abs/path`` or ``s3://bucket/prefix``."""
        raw = (text or "").strip()
        if not raw:
            raise ConfigError(variable, f"expected {STORAGE_FORMS}, got an empty value")
        if "://" not in raw:
            return cls("file", path=os.path.abspath(raw), variable=variable)
        scheme = raw.split("://", 1)[0].lower()
        try:
            parts = urllib.parse.urlsplit(raw)
        except ValueError:
            raise ConfigError(variable, f"expected {STORAGE_FORMS}, got a malformed URL") from None
        if parts.query or parts.fragment:
            raise ConfigError(variable, "a storage URL takes no ?query or #fragment")
        if "@" in parts.netloc:
            # never echo it: the part before '@' is most likely a credential
            raise ConfigError(variable, "credentials do not belong in the storage URL: use AWS_ACCESS_KEY_ID / "
                                        "AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE) or an instance role")
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ConfigError(variable, f"a file URL needs an absolute path, file:///abs/path, got {raw!r} "
                                            f"(a relative folder is written without file://)")
            path = urllib.parse.unquote(parts.path)
            if not path.startswith("/"):
                raise ConfigError(variable, f"a file URL needs an absolute path, file:///abs/path, got {raw!r}")
            return cls("file", path=os.path.normpath(path), variable=variable)
        if scheme == "s3":
            bucket = parts.netloc
            if not _BUCKET_RE.match(bucket) or ".." in bucket or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
                raise ConfigError(variable, f"bucket names are 3-63 lower-case letters, digits, '.' or '-', "
                                            f"starting and ending with a letter or digit, got {bucket!r}")
            prefix = parts.path.strip("/")
            if prefix and (len(prefix) > 512 or any(seg in (".", "..") or not _PREFIX_SEGMENT_RE.match(seg)
                                                    for seg in prefix.split("/"))):
                raise ConfigError(variable, f"the key prefix must be '/'-separated segments of [A-Za-z0-9._-] "
                                            f"(no empty, '.' or '..' segment, at most 512 characters), "
                                            f"got {parts.path!r}")
            return cls("s3", bucket=bucket, prefix=prefix, variable=variable)
        raise ConfigError(variable, f"expected {STORAGE_FORMS}, got scheme {scheme!r}")


def _secret_field():
    return dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, repr=False)
class Settings:
    api_key: str | None = _secret_field()
    base_url: str = "https://api.kie.ai"
    callback_url: str | None = None
    webhook_secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    webhook_hmac_key: str | None = _secret_field()
    redis_url: str = "redis://localhost:6379/0"
    broker_url: str = "redis://localhost:6379/0"
    result_backend: str = "redis://localhost:6379/0"
    rate_limit: RateLimit = RateLimit(20, 10.0)
    max_in_flight: int = 100
    job_timeout: float = 900.0
    storage_dir: str | None = "./kie-output"
    storage: StorageLocation = dataclasses.field(default_factory=lambda: StorageLocation.parse("./kie-output"))
    s3_endpoint_url: str | None = None
    storage_presign_seconds: int | None = None
    aws_secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    download_allow_hosts: tuple[str, ...] = ()
    key_prefix: str = "kie"
    queue: str = "celery"
    # Tuning knobs (documented in README, not part of DESIGN's stable table).
    http_timeout: float = 30.0
    verify_callbacks: bool = True
    callback_tolerance: float = 300.0
    callback_grace: float = 60.0
    unknown_outcome_grace: float = 120.0
    max_attempts: int = 6
    generation_retries: int = 2
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    sweep_interval: float = 1.0
    pump_interval: float = 0.05
    download_max_bytes: int = 50 * 1024 * 1024
    webhook_max_body: int = 64 * 1024
    # Tenants and accounts.
    # (name, value) pairs, so that Settings stays hashable
    tenant_weights: tuple[tuple[str, float], ...] = ()
    tenant_max_in_flight: tuple[tuple[str, int], ...] = ()
    tenant_api_keys: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)
    min_credits: float | None = None

    def tenant_weight(self, tenant: str) -> float:
        """``KIE_TENANT_WEIGHTS``'s weight of ``tenant`` (unlisted tenants weigh 1)."""
        return float(dict(self.tenant_weights).get(tenant, 1.0))

    def tenant_cap(self, tenant: str) -> int | None:
        """``KIE_TENANT_MAX_IN_FLIGHT``'s cap of ``tenant`` (its own, else ``*``), or None for no cap."""
        caps = dict(self.tenant_max_in_flight)
        cap = caps.get(tenant, caps.get("*"))
        return None if cap is None else int(cap)

    def api_key_for(self, tenant: str) -> str | None:
        """The key a tenant's jobs are sent with: ``KIE_API_KEY_<TENANT>``, else ``KIE_API_KEY``."""
        return dict(self.tenant_api_keys).get(tenant_env_suffix(tenant), self.api_key)

    def api_keys(self) -> list[str]:
        """Every configured key, ``KIE_API_KEY`` first (each one an account), without repeats."""
        keys = [self.api_key] if self.api_key else []
        return keys + sorted({k for _, k in self.tenant_api_keys if k not in keys})
    # Fault tolerance: how long finished jobs are kept, Redis Sentinel, replica acknowledgements.
    job_retention: float = 7 * 86400.0
    sentinel_master: str | None = None
    redis_min_replicas: int = 0
    log_format: str | None = None      # json | text; None: JSON unless stderr is a terminal (worker.logs)
    metrics_port: int | None = None    # a worker serves the deployment's /metrics on this port too
    task_events: bool = False          # Celery task events for monitors (Flower, `celery events`)
    otel: bool = False                 # OpenTelemetry tracing (worker.tracing)
    otel_jsonl: str | None = None      # also write spans as JSON lines to this file
    dashboard_bind: str = "127.0.0.1"
    dashboard_token: str | None = _secret_field()

    @property
    def webhook_secret(self) -> str | None:
        """The current secret (the first of ``KIE_WEBHOOK_SECRET``'s comma-separated list)."""
        return self.webhook_secrets[0] if self.webhook_secrets else None

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction (including passwords inside service URLs)."""
        vals = [self.api_key, self.webhook_hmac_key, self.dashboard_token, *self.webhook_secrets,
                *self.aws_secrets, *(k for _, k in self.tenant_api_keys)]
        for u in (self.redis_url, self.broker_url, self.result_backend):
            password = urllib.parse.urlsplit(u).password if u else None
            if password:
                vals.append(password)
        return [v for v in vals if v]

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name in ("redis_url", "broker_url", "result_backend") and value:
                value = _mask_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def dashboard_exposure_problem(self) -> ConfigError | None:
        """Why the dashboard must not start with these settings (bound to a non-loopback address without
        ``KIE_DASHBOARD_TOKEN``), or None."""
        import ipaddress
        if ipaddress.ip_address(self.dashboard_bind).is_loopback or self.dashboard_token:
            return None
        return ConfigError("KIE_DASHBOARD_TOKEN", f"is required when the dashboard listens on {self.dashboard_bind} "
                                                  "(not a loopback address): set a long random token, or bind "
                                                  "KIE_DASHBOARD_BIND=127.0.0.1")

    def require_api_key(self) -> str:
        if not self.api_key:
            raise ConfigError("KIE_API_KEY", "is required to submit jobs (set it to your kie.ai API key)")
        return self.api_key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name)
            if value is None or value.strip() == "":
                return default
            return value.strip()

        def number(name: str, default: float, kind=float, minimum: float = 0.0) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(name, f"expected a {'whole ' if kind is int else ''}number, got {raw!r}") from None
            if not math.isfinite(value):
                raise ConfigError(name, f"expected a finite number, got {raw!r}")
            if value < minimum:
                raise ConfigError(name, f"must be at least {minimum:g}, got {raw!r}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(name, f"expected true or false, got {raw!r}")

        def port(name: str) -> int | None:
            if get(name) is None:
                return None
            value = int(number(name, 0, int, 1))
            if value > 65535:
                raise ConfigError(name, f"expected a TCP port (1-65535), got {get(name)!r}")
            return value

        def url(name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
            raw = get(name, default)
            if raw is None:
                return None
            if not raw.split("://", 1)[0].lower() in schemes or "://" not in raw:
                raise ConfigError(name, f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
                                        f"got {_mask_url(raw)!r}")
            return raw

        redis_url = url("REDIS_URL", "redis://localhost:6379/0", ("redis", "rediss", "unix", "sentinel"))
        broker = url("CELERY_BROKER_URL", redis_url,
                     ("redis", "rediss", "amqp", "amqps", "pyamqp", "unix", "sentinel"))
        backend = url("CELERY_RESULT_BACKEND", redis_url, ("redis", "rediss", "unix", "sentinel"))
        sentinel_master = get("KIE_SENTINEL_MASTER")
        urls = {"REDIS_URL": redis_url, "CELERY_BROKER_URL": broker, "CELERY_RESULT_BACKEND": backend}
        for name, value in urls.items():
            if value.lower().startswith("sentinel://"):
                urls[name] = sentinel_url(value, name)
                if not sentinel_master:
                    raise ConfigError("KIE_SENTINEL_MASTER", f"is required when {name} is a sentinel:// URL "
                                                             "(it names the master the Sentinels watch)")
        redis_url, broker, backend = urls["REDIS_URL"], urls["CELERY_BROKER_URL"], urls["CELERY_RESULT_BACKEND"]
        callback = url("KIE_CALLBACK_URL", None, ("http", "https"))
        secrets = tuple(s.strip() for s in (get("KIE_WEBHOOK_SECRET") or "").split(",") if s.strip())
        if callback and not secrets:
            raise ConfigError("KIE_WEBHOOK_SECRET", "is required when KIE_CALLBACK_URL is set "
                                                    "(it signs the per-job token in each callback URL)")
        prefix = get("KIE_KEY_PREFIX", "kie")
        if not re.match(r"^[A-Za-z0-9_.:-]{1,64}$", prefix):
            raise ConfigError("KIE_KEY_PREFIX", f"expected 1-64 letters, digits or _.:-, got {prefix!r}")
        queue = get("KIE_QUEUE", "celery")
        if not re.match(r"^[A-Za-z0-9_.:-]{1,200}$", queue):
            raise ConfigError("KIE_QUEUE", f"expected a queue name of letters, digits or _.:-, got {queue!r}")
        log_format = get("KIE_LOG_FORMAT")
        if log_format is not None and log_format.lower() not in ("json", "text"):
            raise ConfigError("KIE_LOG_FORMAT", f"expected json or text, got {log_format!r}")
        otel_configured = (get("OTEL_TRACES_EXPORTER", "none").lower() != "none"
                           or get("OTEL_EXPORTER_OTLP_ENDPOINT") is not None or get("KIE_OTEL_JSONL") is not None)
        otel = flag("KIE_OTEL", otel_configured)
        if otel and importlib.util.find_spec("opentelemetry.sdk") is None:
            raise ConfigError("KIE_OTEL", "tracing needs the otel extra: pip install 'kie-queue[otel]'")
        allow = tuple(h.strip() for h in (get("KIE_DOWNLOAD_ALLOW_HOSTS") or "").split(",") if h.strip())
        tenant_keys = {}
        for name in env:
            if name.startswith("KIE_API_KEY_") and get(name):
                suffix = name[len("KIE_API_KEY_"):]
                if not re.match(r"^[A-Z0-9_]{1,64}$", suffix):
                    raise ConfigError(name, "the part after KIE_API_KEY_ must be the tenant name upper-cased, "
                                            "with -, . and : written as _ (letters, digits, _)")
                tenant_keys[suffix] = get(name)
        min_credits = get("KIE_MIN_CREDITS")
        storage, storage_dir = _storage_location(get("KIE_STORAGE_URL"), get("KIE_STORAGE_DIR"))
        presign = number("KIE_STORAGE_PRESIGN_SECONDS", 0, int, 0) or None
        if presign is not None:
            if presign > 7 * 86400:
                raise ConfigError("KIE_STORAGE_PRESIGN_SECONDS", f"S3 signatures last at most 604800 s (7 days), "
                                                                 f"got {presign}")
            if storage.scheme != "s3":
                raise ConfigError("KIE_STORAGE_PRESIGN_SECONDS", f"presigned URLs need s3:// storage, but "
                                                                 f"{storage.variable} is {storage.url!r}")
        return cls(
            api_key=get("KIE_API_KEY"),
            base_url=url("KIE_BASE_URL", "https://api.kie.ai", ("http", "https")).rstrip("/"),
            callback_url=callback.rstrip("/") if callback else None,
            webhook_secrets=secrets,
            webhook_hmac_key=get("KIE_WEBHOOK_HMAC_KEY"),
            redis_url=redis_url,
            broker_url=broker,
            result_backend=backend,
            rate_limit=RateLimit.parse(get("KIE_RATE_LIMIT", "20/10s")),
            max_in_flight=int(number("KIE_MAX_IN_FLIGHT", 100, int, 1)),
            job_timeout=number("KIE_JOB_TIMEOUT", 900.0, float, 1),
            storage_dir=storage_dir,
            storage=storage,
            s3_endpoint_url=url("KIE_S3_ENDPOINT_URL", None, ("http", "https")),
            storage_presign_seconds=int(presign) if presign else None,
            aws_secrets=tuple(v for v in (get("AWS_SECRET_ACCESS_KEY"), get("AWS_SESSION_TOKEN")) if v),
            download_allow_hosts=allow,
            key_prefix=prefix,
            queue=queue,
            http_timeout=number("KIE_HTTP_TIMEOUT", 30.0, float, 0.1),
            verify_callbacks=flag("KIE_VERIFY_CALLBACKS", True),
            callback_tolerance=number("KIE_WEBHOOK_TOLERANCE", 300.0, float, 1),
            callback_grace=number("KIE_CALLBACK_GRACE", 60.0, float, 0),
            unknown_outcome_grace=number("KIE_UNKNOWN_OUTCOME_GRACE", 120.0, float, 0),
            max_attempts=int(number("KIE_MAX_ATTEMPTS", 6, int, 1)),
            generation_retries=_at_most("KIE_GENERATION_RETRIES", int(number("KIE_GENERATION_RETRIES", 2, int, 0)),
                                        MAX_GENERATION_RETRIES),
            backoff_base=number("KIE_BACKOFF_BASE", 1.0, float, 0.01),
            backoff_cap=number("KIE_BACKOFF_CAP", 60.0, float, 0.01),
            sweep_interval=number("KIE_SWEEP_INTERVAL", 1.0, float, 0.1),
            pump_interval=number("KIE_PUMP_INTERVAL", 0.05, float, 0.01),
            download_max_bytes=int(number("KIE_DOWNLOAD_MAX_BYTES", 50 * 1024 * 1024, int, 1)),
            webhook_max_body=int(number("KIE_WEBHOOK_MAX_BODY", 64 * 1024, int, 1024)),
            tenant_weights=tuple(parse_tenant_map(get("KIE_TENANT_WEIGHTS"), "KIE_TENANT_WEIGHTS",
                                                  integer=False, allow_star=False).items()),
            tenant_max_in_flight=tuple(parse_tenant_map(get("KIE_TENANT_MAX_IN_FLIGHT"), "KIE_TENANT_MAX_IN_FLIGHT",
                                                        integer=True, allow_star=True).items()),
            tenant_api_keys=tuple(sorted(tenant_keys.items())),
            min_credits=None if min_credits is None else number("KIE_MIN_CREDITS", 0.0, float, 0),
            log_format=log_format.lower() if log_format else None,
            otel=otel,
            metrics_port=port("KIE_METRICS_PORT"),
            task_events=flag("KIE_TASK_EVENTS", False),
            otel_jsonl=get("KIE_OTEL_JSONL"),
            dashboard_bind=_bind_address(get("KIE_DASHBOARD_BIND", "127.0.0.1")),
            dashboard_token=_dashboard_token(get("KIE_DASHBOARD_TOKEN")),
            job_retention=number("KIE_JOB_RETENTION", 7 * 86400.0, float, 1),
            sentinel_master=sentinel_master,
            redis_min_replicas=int(number("KIE_REDIS_MIN_REPLICAS", 0, int, 0)),
        )


def sentinel_nodes(raw: str, variable: str = "REDIS_URL") -> tuple[list[tuple[str, int]], int, str | None]:
    """``sentinel://[:pw@]h1:p1[;sentinel://h2:p2...][/DB]`` → ([(host, port)...], db, password)."""
    nodes, db, password = [], 0, None
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        parsed = urllib.parse.urlsplit(part)
        if parsed.scheme.lower() != "sentinel" or not parsed.hostname:
            raise ConfigError(variable, f"expected sentinel://HOST:PORT[;sentinel://HOST:PORT...][/DB], "
                                        f"got {_mask_url(raw)!r}")
        try:
            port = parsed.port or 26379
        except ValueError:
            raise ConfigError(variable, f"bad port in {_mask_url(part)!r}") from None
        path = parsed.path.strip("/")
        if path:
            if not path.isdigit():
                raise ConfigError(variable, f"the database after the last node must be a number, got {path!r}")
            db = int(path)
        password = parsed.password or password
        nodes.append((parsed.hostname, port))
    if not nodes:
        raise ConfigError(variable, f"no Sentinel node in {_mask_url(raw)!r}")
    return nodes, db, password


def sentinel_url(raw: str, variable: str = "REDIS_URL") -> str:
    """The Sentinel URL with the database and credentials on every node, as Celery and kombu read it
    (they take them from the first node; the documented form puts ``/DB`` after the last)."""
    nodes, db, _ = sentinel_nodes(raw, variable)
    first = urllib.parse.urlsplit(raw.split(";")[0].strip())
    auth = first.netloc.rsplit("@", 1)[0] + "@" if "@" in first.netloc else ""
    return ";".join(f"sentinel://{auth}{host}:{port}/{db}" for host, port in nodes)


def _bind_address(raw: str) -> str:
    import ipaddress
    try:
        return str(ipaddress.ip_address(raw.strip().strip("[]")))
    except ValueError:
        raise ConfigError("KIE_DASHBOARD_BIND", f"expected an IP address to listen on (127.0.0.1, 0.0.0.0, ::1), "
                                                f"got {raw!r}") from None


def _dashboard_token(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if len(raw) < 16:
        raise ConfigError("KIE_DASHBOARD_TOKEN", f"must be at least 16 characters (got {len(raw)}); "
                                                 "use a long random value, e.g. `openssl rand -hex 24`")
    return raw


MAX_GENERATION_RETRIES = 10
"""Upper bound of ``KIE_GENERATION_RETRIES`` (each re-generation is a new upstream task)."""


def _at_most(name: str, value, maximum):
    if value > maximum:
        raise ConfigError(name, f"must be at most {maximum}, got {value!r}")
    return value


def _storage_location(url_value: str | None, dir_value: str | None) -> tuple[StorageLocation, str | None]:
    """``KIE_STORAGE_URL`` and its alias ``KIE_STORAGE_DIR``: one of them, or both naming the same place.

    Returns the location and the local folder as written (``storage_dir``; None for object storage).
    """
    if url_value is None and dir_value is None:
        return StorageLocation.parse("./kie-output", "KIE_STORAGE_URL"), "./kie-output"
    by_url = StorageLocation.parse(url_value, "KIE_STORAGE_URL") if url_value is not None else None
    by_dir = StorageLocation.parse(dir_value, "KIE_STORAGE_DIR") if dir_value is not None else None
    if by_url and by_dir and by_url.url != by_dir.url:
        raise ConfigError("KIE_STORAGE_URL", f"and its alias KIE_STORAGE_DIR name different places "
                                             f"({by_url.url!r} and {by_dir.url!r}): set only KIE_STORAGE_URL")
    location = by_url or by_dir
    if location.scheme != "file":
        return location, None
    raw = url_value if by_url else dir_value
    return location, (location.path if "://" in raw else raw)


def _mask_url(raw: str) -> str:
    """Hide a password in ``scheme://user:password@host`` so a config error never shows it."""
    return re.sub(r"^((?:[a-zA-Z][a-zA-Z0-9+.-]*://)?[^:/@]*:)[^@/]*@", r"\1***@", raw)


@functools.lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()
