"""Result files in any S3-compatible object store (``KIE_STORAGE_URL=s3://bucket/prefix``): ``S3Storage``.

AWS S3, Cloudflare R2, MinIO, Backblaze B2 or GCS's interoperability endpoint (``KIE_S3_ENDPOINT_URL``),
through boto3 (the ``[s3]`` extra, imported only when this module is) with the standard AWS
configuration: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``,
instance and container roles.

How a file is written, memory bounded by about one part (``part_size``, default 8 MiB) plus the
bytes of one read:

* bodies up to one part are one ``PutObject`` with the content type and the metadata ``sha256`` and
  ``bytes``;
* larger ones stream, part by part, into a multipart upload under ``<prefix>/.incoming/``; when the
  body has ended the upload is completed and copied server-side onto the final key with its metadata
  (S3 metadata is fixed when an object is created, and the sha256 is known only at the end), then the
  incoming object is deleted.  So the final key only ever holds a complete file with its metadata.
* Before anything is committed, a ``HeadObject`` of the final key: the same sha256 and size there
  means the file is already stored, and nothing is written (the multipart upload is aborted).
* After the commit, a ``HeadObject`` checks the stored size and metadata.

A source that fails midway, or any storage error, aborts the multipart upload (and deletes an
incoming object already completed): no object is left.  A process killed midway can leave an
incomplete multipart upload or an ``.incoming/`` object: a bucket lifecycle rule expires both
(README, "Storage").  Transient errors (5xx, throttling, timeouts) are retried by botocore's
``standard`` retry mode first, then reported with ``transient=True`` so the task retries them.
Error texts hold operation, error code and status, never a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
from typing import Iterable, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, NoCredentialsError, PartialCredentialsError,
                                 ReadTimeoutError)

from ...errors import StorageError
from .base import Storage, Stored, validate_name

MIN_PART_SIZE = 5 * 1024 * 1024     # S3's minimum for every part but the last
DEFAULT_PART_SIZE = 8 * 1024 * 1024
INCOMING = ".incoming"
CREDENTIALS = "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
_TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                              "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequestsException",
                              "RequestThrottled", "BandwidthLimitExceeded"})
_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                               "TokenRefreshRequired", "InvalidSecurity", "AccessDenied", "AllAccessDisabled",
                               "AuthorizationHeaderMalformed"})


class S3Storage(Storage):
    """Files as objects ``<prefix>/<name>`` in ``bucket``.

    ``endpoint_url`` for a store other than AWS (path-style addressing then); ``presign_seconds`` adds
    a presigned GET URL valid that long to every ``Stored``; ``timeout`` bounds each request's connect
    and read (seconds); ``max_attempts`` is botocore's retry budget per request.  The boto3 client is
    made on first use, once per instance (boto3 clients are thread-safe; make a new instance after a fork).
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 presign_seconds: int | None = None, part_size: int = DEFAULT_PART_SIZE, timeout: float = 30.0,
                 max_attempts: int = 5, variable: str = "KIE_STORAGE_URL"):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum), got {part_size!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.presign_seconds = presign_seconds
        self.part_size = part_size
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.variable = variable
        self._client = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def client(self):
        """The boto3 S3 client (standard AWS credential chain; retries in botocore's ``standard`` mode)."""
        with self._lock:
            if self._client is None:
                config = Config(retries={"mode": "standard", "max_attempts": self.max_attempts},
                                connect_timeout=min(self.timeout, 10.0), read_timeout=self.timeout,
                                signature_version="s3v4",
                                s3={"addressing_style": "path"} if self.endpoint_url else None)
                self._client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
            return self._client

    def key_for(self, relative_name: str) -> str:
        name = validate_name(relative_name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri_for(self, relative_name: str) -> str:
        return f"s3://{self.bucket}/{self.key_for(relative_name)}"

    def presigned_url(self, relative_name: str, seconds: int) -> str:
        """An http(s) GET URL for ``relative_name`` that needs no credentials, valid ``seconds``."""
        return self._call("presign", self.client.generate_presigned_url, "get_object",
                          Params={"Bucket": self.bucket, "Key": self.key_for(relative_name)}, ExpiresIn=seconds)

    def read(self, relative_name: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key_for(relative_name))["Body"]
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404"):
                raise FileNotFoundError(relative_name) from None
            raise self._error("GetObject", e) from None
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def check(self) -> None:
        self._call("HeadBucket", self.client.head_bucket, Bucket=self.bucket)

    def head(self, relative_name: str) -> dict | None:
        """The stored object's ``{"bytes", "sha256", "content_type"}``, or None when there is none."""
        meta = self._head(self.key_for(relative_name))
        if meta is None:
            return None
        return {"bytes": meta["ContentLength"], "sha256": meta.get("Metadata", {}).get("sha256"),
                "content_type": meta.get("ContentType")}

    # -- writing ------------------------------------------------------------------------------------
    def store(self, relative_name: str, chunks: Iterable[bytes], *, content_type: str) -> Stored:
        key = self.key_for(relative_name)
        digest, size = hashlib.sha256(), 0
        buffer = bytearray()
        upload = None
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                if len(buffer) >= self.part_size:
                    if upload is None:
                        upload = _Multipart(self, f"{self._incoming_prefix()}{relative_name}.{secrets.token_hex(8)}",
                                            content_type)
                    upload.send(buffer)
                    buffer = bytearray()
            sha = digest.hexdigest()
            existing = self._head(key)
            if existing is not None and existing["ContentLength"] == size \
                    and existing.get("Metadata", {}).get("sha256") == sha:
                if upload is not None:
                    upload.abort()
                return self._stored(relative_name, key, sha, size, content_type, skipped=True)
            metadata = {"sha256": sha, "bytes": str(size)}
            if upload is None:
                self._call("PutObject", self.client.put_object, Bucket=self.bucket, Key=key, Body=buffer,
                           ContentType=content_type, Metadata=metadata)
            else:
                if buffer:
                    upload.send(buffer)
                buffer = bytearray()
                upload.complete()
                self._call("CopyObject", self.client.copy_object, Bucket=self.bucket, Key=key,
                           CopySource={"Bucket": self.bucket, "Key": upload.key}, MetadataDirective="REPLACE",
                           ContentType=content_type, Metadata=metadata)
                upload.discard()
            self._verify(key, sha, size)
        except BaseException:
            if upload is not None:
                upload.clean_up()
            raise
        return self._stored(relative_name, key, sha, size, content_type)

    def _incoming_prefix(self) -> str:
        return f"{self.prefix}/{INCOMING}/" if self.prefix else f"{INCOMING}/"

    def _stored(self, name: str, key: str, sha: str, size: int, content_type: str, *, skipped: bool = False):
        presigned = self.presigned_url(name, self.presign_seconds) if self.presign_seconds else None
        return Stored(name, f"s3://{self.bucket}/{key}", None, sha, size, content_type, skipped=skipped,
                      presigned_url=presigned)

    def _verify(self, key: str, sha: str, size: int) -> None:
        meta = self._head(key)
        found = (meta or {}).get("ContentLength"), (meta or {}).get("Metadata", {}).get("sha256")
        if found != (size, sha):
            raise StorageError(f"s3://{self.bucket}/{key} holds {found[0]} bytes with sha256 {found[1]} after "
                               f"writing {size} bytes with sha256 {sha}", transient=True)

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _status(e) == 404 and _code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error("HeadObject", e) from None
        except BotoCoreError as e:
            raise self._error("HeadObject", e) from None

    def _call(self, operation: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ClientError, BotoCoreError) as e:
            raise self._error(operation, e) from None

    def _error(self, operation: str, e: Exception) -> StorageError:
        """A ``StorageError`` for a botocore error: what failed and what to check, never a credential."""
        where = f"S3 {operation} on s3://{self.bucket}"
        if isinstance(e, ClientError):
            code, status = _code(e), _status(e)
            if code in ("NoSuchBucket",) or (operation == "HeadBucket" and status == 404):
                return StorageError(f"{where}: the bucket {self.bucket!r} does not exist (HTTP {status})",
                                    variable=self.variable)
            if code in _CREDENTIAL_CODES or status in (401, 403):
                return StorageError(f"{where}: {code or 'access denied'} (HTTP {status}): check the credentials "
                                    f"({CREDENTIALS}, AWS_PROFILE or the instance role) and their permissions",
                                    variable=CREDENTIALS)
            transient = status is None or status >= 500 or status == 429 or code in _TRANSIENT_CODES
            said = f"{code} (HTTP {status})" if code and code != str(status) else f"HTTP {status}"
            return StorageError(f"{where}: {said}", transient=transient)
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"{where}: no usable AWS credentials found (set {CREDENTIALS}, AWS_PROFILE, or "
                                f"run with an instance role)", variable=CREDENTIALS)
        if isinstance(e, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
            return StorageError(f"{where}: cannot reach the endpoint ({type(e).__name__})", transient=True,
                                variable="KIE_S3_ENDPOINT_URL" if self.endpoint_url else None)
        return StorageError(f"{where}: {type(e).__name__}")


class _Multipart:
    """One multipart upload of an incoming object: parts sent as they fill, then completed, or aborted."""

    def __init__(self, storage: S3Storage, key: str, content_type: str):
        self.storage, self.key = storage, key
        self.parts: list[dict] = []
        self.completed = self.discarded = False
        answer = storage._call("CreateMultipartUpload", storage.client.create_multipart_upload,
                               Bucket=storage.bucket, Key=key, ContentType=content_type)
        self.upload_id = answer["UploadId"]

    def send(self, body: bytearray) -> None:
        """Upload ``body`` as the next part (the caller hands it over and does not change it again)."""
        number = len(self.parts) + 1
        s = self.storage
        answer = s._call("UploadPart", s.client.upload_part, Bucket=s.bucket, Key=self.key, UploadId=self.upload_id,
                         PartNumber=number, Body=body)
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def complete(self) -> None:
        s = self.storage
        s._call("CompleteMultipartUpload", s.client.complete_multipart_upload, Bucket=s.bucket, Key=self.key,
                UploadId=self.upload_id, MultipartUpload={"Parts": self.parts})
        self.completed = True

    def abort(self) -> None:
        s = self.storage
        s._call("AbortMultipartUpload", s.client.abort_multipart_upload, Bucket=s.bucket, Key=self.key,
                UploadId=self.upload_id)
        self.discarded = True

    def discard(self) -> None:
        """Delete the completed incoming object (it has been copied to its final key)."""
        s = self.storage
        s._call("DeleteObject", s.client.delete_object, Bucket=s.bucket, Key=self.key)
        self.discarded = True

    def clean_up(self) -> None:
        """After a failure: leave nothing behind (best effort; a lifecycle rule catches what this cannot)."""
        if self.discarded:
            return
        with contextlib.suppress(StorageError):
            if self.completed:
                self.discard()
            else:
                self.abort()


def _code(e: ClientError) -> str | None:
    return (e.response.get("Error") or {}).get("Code")


def _status(e: ClientError) -> int | None:
    return (e.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
