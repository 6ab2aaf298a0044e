"""Every exception kie-queue raises, under one base class.

Errors travel through Celery's result backend by name: a client that has not
imported this module gets a stand-in class carrying only ``args``.  So every
error keeps all of its fields in its positional ``args``, in ``__init__`` order,
and the attributes are read back from ``args``.  Producers that want the
attributes ``import worker.errors``.

Messages never contain secrets: the API key, webhook secrets and job tokens
are redacted before any text reaches an exception (see ``worker.redact``).
"""

from __future__ import annotations


class KieQueueError(Exception):
    """Base class of every error raised by kie-queue."""

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message

    @property
    def message(self) -> str:
        return " ".join(str(a) for a in self.args if a is not None)


class ConfigError(KieQueueError):
    """A configuration value (environment variable) is missing or malformed."""

    def __init__(self, variable: str, problem: str):
        super().__init__(variable, problem)

    @property
    def variable(self) -> str:
        return self.args[0]

    @property
    def message(self) -> str:
        return f"{self.args[0]}: {self.args[1]}"


class InvalidInput(KieQueueError):
    """Input rejected by a marshmallow schema before any network call.

    ``errors`` maps field names to lists of messages (marshmallow's format).
    """

    def __init__(self, errors: dict, model: str | None = None, job_id: str | None = None):
        super().__init__(errors, model, job_id)

    @property
    def errors(self) -> dict:
        return self.args[0]

    @property
    def model(self) -> str | None:
        return self.args[1]

    @property
    def job_id(self) -> str | None:
        return self.args[2]

    @property
    def message(self) -> str:
        parts = []
        for field, msgs in sorted((self.errors or {}).items(), key=lambda kv: str(kv[0])):
            if isinstance(msgs, dict):
                msgs = [f"{k}: {v}" for k, v in msgs.items()]
            elif not isinstance(msgs, (list, tuple)):
                msgs = [msgs]
            parts.append(f"{field}: {'; '.join(str(m) for m in msgs)}")
        where = f" for model {self.model!r}" if self.model else ""
        return f"invalid input{where}: " + ", ".join(parts)


class JobError(KieQueueError):
    """Base of the errors that end a job (its chain fails with one of these)."""


class GenerationFailed(JobError):
    """The upstream task finished with ``state: fail`` (or the create was refused for good)."""

    def __init__(self, fail_code: str | int | None, fail_msg: str | None, job_id: str | None = None,
                 task_id: str | None = None):
        super().__init__(fail_code, fail_msg, job_id, task_id)

    @property
    def fail_code(self):
        return self.args[0]

    @property
    def fail_msg(self):
        return self.args[1]

    @property
    def job_id(self):
        return self.args[2]

    @property
    def task_id(self):
        return self.args[3]

    @property
    def message(self) -> str:
        return f"generation failed for job {self.job_id}: [{self.fail_code}] {self.fail_msg}"


class GenerationTimeout(JobError):
    """No outcome arrived within the job's timeout (seconds)."""

    def __init__(self, job_id: str | None, timeout: float | None, task_id: str | None = None):
        super().__init__(job_id, timeout, task_id)

    @property
    def job_id(self):
        return self.args[0]

    @property
    def timeout(self):
        return self.args[1]

    @property
    def task_id(self):
        return self.args[2]

    @property
    def message(self) -> str:
        return f"job {self.job_id} had no outcome within {self.timeout} s"


class GenerationCancelled(JobError):
    """An operator cancelled the job (``kie-queue cancel``).  ``submitted`` says whether kie.ai already
    had the task (it has no cancel call: its credits may still be spent; its outcome is ignored)."""

    def __init__(self, job_id: str | None, task_id: str | None = None, submitted: bool = False,
                 reason: str | None = None):
        super().__init__(job_id, task_id, submitted, reason)

    @property
    def job_id(self):
        return self.args[0]

    @property
    def task_id(self):
        return self.args[1]

    @property
    def submitted(self) -> bool:
        return bool(self.args[2])

    @property
    def reason(self):
        return self.args[3]

    @property
    def message(self) -> str:
        when = "after submission (kie.ai may still bill it)" if self.submitted else "before submission"
        return f"job {self.job_id} was cancelled {when}"


class UpstreamError(KieQueueError):
    """kie.ai answered with an error code (in the HTTP status or in the body ``code``).

    ``retryable`` says whether the same request may be sent again (429, 455, 500 and
    transport errors) or must not (401, 402, 404, 422, 433, 505).
    """

    retryable = False

    def __init__(self, code: int | None, msg: str | None, http_status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(code, msg, http_status, retry_after)

    @property
    def code(self):
        return self.args[0]

    @property
    def msg(self):
        return self.args[1]

    @property
    def http_status(self):
        return self.args[2]

    @property
    def retry_after(self):
        return self.args[3]

    @property
    def message(self) -> str:
        return f"kie.ai error {self.code} (HTTP {self.http_status}): {self.msg}"


class RetryableUpstreamError(UpstreamError):
    """A transient upstream error: 455 maintenance, 500 server error, other 5xx."""

    retryable = True


class RateLimited(RetryableUpstreamError):
    """kie.ai answered 429: creates pause for every worker on the key (``retry_after`` seconds if given)."""


class Unauthorized(UpstreamError):
    """401: the API key is wrong or revoked."""


class InsufficientCredits(UpstreamError):
    """402: the account has no credits left; submissions pause until cleared."""


class NotFound(UpstreamError):
    """404 (or recordInfo's ``recordInfo is null``): the resource does not exist."""


class UpstreamValidationError(UpstreamError):
    """422: kie.ai refused the request body (or the model is unknown)."""


class UsageCapExceeded(UpstreamError):
    """433: the sub-key is over its hourly/daily/total usage cap."""


class FeatureDisabled(UpstreamError):
    """505: the feature is disabled upstream."""


class TransportError(RetryableUpstreamError):
    """The request did not get an answer (connection refused or reset, timeout).

    ``sent`` is True when the request may have reached kie.ai (its outcome is unknown:
    a create may have made a billed task), False when it certainly did not.
    """

    def __init__(self, msg: str, sent: bool):
        # not UpstreamError's (code, msg, http_status, retry_after): every field in args, in this order
        Exception.__init__(self, msg, sent)

    @property
    def code(self):
        return None

    @property
    def msg(self):
        return self.args[0]

    @property
    def http_status(self):
        return None

    @property
    def retry_after(self):
        return None

    @property
    def sent(self) -> bool:
        return bool(self.args[1])

    @property
    def message(self) -> str:
        return f"transport error ({'outcome unknown' if self.sent else 'not sent'}): {self.msg}"


class MalformedResponse(RetryableUpstreamError):
    """kie.ai's answer did not match the schema we rely on (field errors in ``msg``)."""


class DownloadError(KieQueueError):
    """A result file could not be copied into storage (``url`` is redacted of tokens).

    ``transient`` is True for failures worth retrying (timeouts, connection errors, HTTP 5xx or 429),
    False for refusals (policy, size, type, HTTP 4xx).
    """

    def __init__(self, url: str, reason: str, transient: bool = False):
        super().__init__(url, reason, transient)

    @property
    def transient(self) -> bool:
        return bool(self.args[2]) if len(self.args) > 2 else False

    @property
    def url(self):
        return self.args[0]

    @property
    def reason(self):
        return self.args[1]

    @property
    def message(self) -> str:
        return f"download {'failed' if self.transient else 'refused'} for {self.url}: {self.reason}"


class StorageError(KieQueueError):
    """The result storage (local folder or S3 bucket) refused or failed an operation.

    ``transient`` is True for failures worth retrying (5xx, throttling, timeouts, connection errors);
    ``variable`` names the setting a user should look at (``KIE_STORAGE_URL``, ``AWS_ACCESS_KEY_ID`` ...)
    when the failure is one of configuration.  ``reason`` never holds a credential.
    """

    def __init__(self, reason: str, transient: bool = False, variable: str | None = None):
        super().__init__(reason, transient, variable)

    @property
    def reason(self) -> str:
        return self.args[0]

    @property
    def transient(self) -> bool:
        return bool(self.args[1]) if len(self.args) > 1 else False

    @property
    def variable(self) -> str | None:
        return self.args[2] if len(self.args) > 2 else None

    @property
    def message(self) -> str:
        return f"storage {'unavailable' if self.transient else 'error'}: {self.reason}"


class WebhookRejected(KieQueueError):
    """Base of the webhook verification failures (each maps to one HTTP status)."""

    status = 400

    def __init__(self, reason: str):
        super().__init__(reason)

    @property
    def message(self) -> str:
        return self.args[0]


class BadToken(WebhookRejected):
    """The per-job token in the callback URL does not verify."""

    status = 401


class BadSignature(WebhookRejected):
    """kie.ai's ``X-Webhook-Signature`` is missing or does not verify."""

    status = 401


class StaleTimestamp(WebhookRejected):
    """``X-Webhook-Timestamp`` is outside the accepted window."""

    status = 401


class TaskMismatch(WebhookRejected):
    """The body's taskId is not the task recorded for this job."""

    status = 409
