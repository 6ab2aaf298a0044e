"""The ``Storage`` interface every result store implements, the record of a stored file, and safe names.

A storage maps safe relative names (``<job_id>/0.png``) to stored files.  ``Storage.store`` consumes
an iterator of byte chunks (never the whole file at once), hashes and counts it, and commits it
atomically: a reader sees the previous file or the complete new one, and if the iterator raises
(a download cut off, a size cap) or the storage fails, nothing of the new file remains.  Storing
the same bytes again under the same name changes nothing (``Stored.skipped``).

Implementations, one per module beside this one: ``local`` (a folder) and ``s3`` (any S3-compatible
object store).  Nothing here does I/O.
"""

from __future__ import annotations

import abc
import dataclasses
import re
import urllib.parse
from typing import Iterable, Iterator

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_NAME_LENGTH = 1024


def validate_name(relative_name: str) -> str:
    """Return ``relative_name`` if it is a safe relative name, else raise ``ValueError`` showing it.

    Safe: ``/``-separated segments of ``[A-Za-z0-9._-]``, no empty, ``.`` or ``..`` segment, no leading
    ``/`` (so never absolute and never outside the storage root), at most ``MAX_NAME_LENGTH`` characters.
    """
    if not isinstance(relative_name, str) or not relative_name:
        raise ValueError(f"storage name must be a non-empty string, got {relative_name!r}")
    if len(relative_name) > MAX_NAME_LENGTH:
        raise ValueError(f"storage name longer than {MAX_NAME_LENGTH} characters, got {relative_name[:40]!r}...")
    for segment in relative_name.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT_RE.match(segment):
            raise ValueError(f"storage name must be relative, made of [A-Za-z0-9._-] segments joined by '/', "
                             f"with no empty, '.' or '..' segment, got {relative_name!r}")
    return relative_name


@dataclasses.dataclass(frozen=True)
class Stored:
    """One stored file: where it is (``uri``; ``path`` for a local file, else None), what it is, and
    whether this call left an identical existing file in place (``skipped``)."""

    name: str
    uri: str
    path: str | None
    sha256: str
    bytes: int
    content_type: str
    skipped: bool = False
    presigned_url: str | None = None

    def file_entry(self, url: str) -> dict:
        """The ``files[]`` entry of ``kie.download``'s result (``presigned_url`` only when made)."""
        entry = {"url": url, "path": self.path, "uri": self.uri, "sha256": self.sha256, "bytes": self.bytes,
                 "content_type": self.content_type}
        if self.presigned_url:
            entry["presigned_url"] = self.presigned_url
        return entry


class Storage(abc.ABC):
    """A place to keep result files under safe relative names."""

    @abc.abstractmethod
    def store(self, relative_name: str, chunks: Iterable[bytes], *, content_type: str) -> Stored:
        """Stream ``chunks`` into ``relative_name``; return what was stored (sha256 and size of the bytes).

        Commits atomically, replacing a different previous file of that name; an existing file with the
        same sha256 and size is left as it is (``skipped=True``).  If ``chunks`` raises, that exception
        propagates and nothing is committed.  Raises ``ValueError`` for an unsafe name and
        ``worker.errors.StorageError`` when the storage itself fails (``transient`` says if a retry may help).
        """

    @abc.abstractmethod
    def uri_for(self, relative_name: str) -> str:
        """Where ``relative_name`` is (or would be) kept: ``file:///...`` or ``s3://bucket/key``."""

    @abc.abstractmethod
    def read(self, relative_name: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """The stored bytes of ``relative_name``, streamed; ``FileNotFoundError`` if there is no such file."""

    def name_for_uri(self, uri: str) -> str | None:
        """The relative name whose ``uri_for`` is ``uri``, or None when ``uri`` is not a file of this storage
        (another bucket or folder, an escape, an unsafe name)."""
        base = self.uri_for("x")[:-1]
        if not isinstance(uri, str) or not uri.startswith(base):
            return None
        name = urllib.parse.unquote(uri[len(base):])
        try:
            return name if self.uri_for(validate_name(name)) == uri else None
        except ValueError:
            return None

    @abc.abstractmethod
    def check(self) -> None:
        """Raise ``worker.errors.StorageError`` (naming the setting to fix) unless files can be stored.

        Cheap (no file is written): meant for start-up and health checks.
        """
