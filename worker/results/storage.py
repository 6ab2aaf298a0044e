"""Where downloaded result files are kept: the ``Storage`` interface and its local-folder implementation.

A storage maps safe relative names (``<job_id>/0.png``) to stored files and writes them atomically:
a reader sees the old file or the complete new one, and a failed write leaves nothing behind.  The
interface is small so an object store (S3, GCS) can implement it later; ``LocalStorage`` is the one
implementation today.  This module does no network I/O and no URL checking (see ``worker.results.fetching``);
it touches the filesystem only when a file is written.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import secrets
from typing import BinaryIO, ContextManager, Iterator

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


class Storage(abc.ABC):
    """A place to keep result files under safe relative names."""

    @abc.abstractmethod
    def open_writer(self, relative_name: str) -> ContextManager[BinaryIO]:
        """A context manager yielding a writable binary file for ``relative_name``.

        On normal exit the content is committed atomically (replacing any previous file of that name);
        if the block raises, nothing is committed and no partial or temporary file remains.
        Raises ``ValueError`` for an unsafe name (see ``validate_name``).
        """

    @abc.abstractmethod
    def path_for(self, relative_name: str) -> str:
        """Where ``relative_name`` is (or would be) stored: a filesystem path, or an object URL."""


class LocalStorage(Storage):
    """Files in a local folder, written through a temporary file in the same directory then ``os.replace``.

    ``root`` is made absolute at construction (relative to the current directory) but created only when
    the first file is written.  Files get the process umask's default mode (usually 0644).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.path.abspath(os.fspath(root))

    def __repr__(self) -> str:
        return f"LocalStorage({self.root!r})"

    def path_for(self, relative_name: str) -> str:
        return os.path.join(self.root, *validate_name(relative_name).split("/"))

    def open_writer(self, relative_name: str) -> ContextManager[BinaryIO]:
        return self._writer(self.path_for(relative_name))

    @contextlib.contextmanager
    def _writer(self, final_path: str) -> Iterator[BinaryIO]:
        directory = os.path.dirname(final_path)
        tmp_path = os.path.join(directory, f".{os.path.basename(final_path)}.{secrets.token_hex(8)}.part")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for attempt in (1, 2):
            created = self._make_dirs(directory)
            try:
                fd = os.open(tmp_path, flags, 0o666)
                break
            except FileNotFoundError:  # a failed writer removed the directory it had just made: once more
                if attempt == 2:
                    raise
        committed = False
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_path, final_path)
            committed = True
            _fsync_dir(directory)
        finally:
            if not committed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_path)
                for d in reversed(created):  # deepest first; stops at the first one still in use
                    try:
                        os.rmdir(d)
                    except OSError:
                        break

    def _make_dirs(self, directory: str) -> list[str]:
        """Create ``directory`` and missing parents; return the ones created, outermost first."""
        missing = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
        created = []
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:  # another writer made it meanwhile: not ours to remove
                continue
            created.append(d)
        return created


def _fsync_dir(directory: str) -> None:
    """Persist the rename itself (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def storage_from_settings(settings) -> Storage:
    """The storage configured by ``KIE_STORAGE_DIR`` (``settings.storage_dir``)."""
    return LocalStorage(settings.storage_dir)
