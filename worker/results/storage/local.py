"""Result files in a local folder (``KIE_STORAGE_URL=file:///...`` or a plain path): ``LocalStorage``.

Files are written through a temporary file in the same directory, fsynced, then renamed into place
(``os.replace``), so a reader sees the old file or the complete new one.  Good for one host; with
workers on several hosts use object storage (``worker.results.storage.s3``): the next step of a chain
may run where this folder does not exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import urllib.parse
from typing import BinaryIO, ContextManager, Iterable, Iterator

from ...errors import StorageError
from .base import Storage, Stored, validate_name

_READ_SIZE = 1024 * 1024


class LocalStorage(Storage):
    """Files under ``root``, made absolute at construction but created only when the first file is written.

    Files get the process umask's default mode (usually 0644).  ``variable`` names the setting that
    chose the folder, for error messages.
    """

    def __init__(self, root: str | os.PathLike, *, variable: str = "KIE_STORAGE_URL"):
        self.root = os.path.abspath(os.fspath(root))
        self.variable = variable

    def __repr__(self) -> str:
        return f"LocalStorage({self.root!r})"

    def path_for(self, relative_name: str) -> str:
        """The filesystem path of ``relative_name``."""
        return os.path.join(self.root, *validate_name(relative_name).split("/"))

    def uri_for(self, relative_name: str) -> str:
        return "file://" + urllib.parse.quote(self.path_for(relative_name))

    def read(self, relative_name: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        with open(self.path_for(relative_name), "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def check(self) -> None:
        existing = self.root
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise StorageError(f"{existing!r} is not a folder, so {self.root!r} cannot be one", variable=self.variable)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StorageError(f"folder {existing!r} is not writable by this process", variable=self.variable)

    def store(self, relative_name: str, chunks: Iterable[bytes], *, content_type: str) -> Stored:
        final_path = self.path_for(relative_name)
        digest, size = hashlib.sha256(), 0
        source = _Source(chunks)
        try:
            with self.open_writer(relative_name) as f:
                for chunk in source:
                    digest.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
                f.flush()
                if os.fstat(f.fileno()).st_size != size:
                    raise StorageError(f"wrote {size} bytes but the file has {os.fstat(f.fileno()).st_size}")
                sha = digest.hexdigest()
                if _same_file(final_path, sha, size):
                    raise _Unchanged
        except _Unchanged:
            return Stored(relative_name, self.uri_for(relative_name), final_path, sha, size, content_type,
                          skipped=True)
        except _Source.Failed as e:  # the source's own error (a cut download is an OSError too), as it was
            raise e.__cause__ from None
        except OSError as e:
            raise StorageError(f"cannot write {final_path!r}: {e.strerror or e}", variable=self.variable) from None
        return Stored(relative_name, self.uri_for(relative_name), final_path, sha, size, content_type)

    def open_writer(self, relative_name: str) -> ContextManager[BinaryIO]:
        """A writable binary file for ``relative_name``, committed atomically when the block ends normally.

        If the block raises, nothing is committed and no partial or temporary file (nor a directory
        made for it) remains.  Raises ``ValueError`` for an unsafe name.
        """
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


class _Source:
    """Iterates ``chunks``, wrapping any error of theirs in ``_Source.Failed`` so it is told apart from ours."""

    class Failed(Exception):
        pass

    def __init__(self, chunks: Iterable[bytes]):
        self._it = iter(chunks)

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._it)
        except StopIteration:
            raise
        except Exception as e:
            raise _Source.Failed() from e


class _Unchanged(Exception):
    """Raised inside the writer to discard the temporary file: the existing file has the same bytes."""


def _same_file(path: str, sha256: str, size: int) -> bool:
    """Whether ``path`` exists with exactly ``size`` bytes hashing to ``sha256``."""
    try:
        if os.path.getsize(path) != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(_READ_SIZE):
                digest.update(block)
        return digest.hexdigest() == sha256
    except OSError:
        return False


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
