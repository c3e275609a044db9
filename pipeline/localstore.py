"""A local directory seen as a bucket: keys are ``/``-separated relative paths.

Writes land in a temporary file beside the target and are renamed into place,
so a reader never sees half an object. A multipart upload is one sparse
temporary file that parts write into at their offsets (from any process),
renamed when complete. Listing walks directories in key order so a listing
can resume after a key, as on S3. Local files carry no user metadata or tags.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import mimetypes
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Iterator

from pipeline import errors
from pipeline.checksums import multipart_etag
from pipeline.store import Download, ObjectAttributes, ObjectInfo, StoreSpec

PAGE = 1000
# A write in progress: ".cloudmover-" and 32 hex digits beside its target (a name of its own, so a
# target's name may take all 255 bytes a file name has); before, ".NAME.cloudmover-" and the
# digits. Listings skip exactly these names, never a user's file that merely holds the mark.
_TEMP_MARK = ".cloudmover-"
_TEMP_NAME = re.compile(r"\.(?:.*\.)?cloudmover-[0-9a-f]{32}", re.DOTALL)


class LocalStore:
    def __init__(self, spec: StoreSpec):
        self.spec = spec
        self.root = Path(spec.bucket).resolve()

    def path(self, key: str) -> Path:
        if "\0" in key:   # S3 allows it; no file name can hold it (os would raise ValueError)
            raise errors.BadLocation(f"key {key!r} holds a NUL character, which no file name can")
        target = (self.root / key).resolve()
        if target != self.root and self.root not in target.parents:
            raise errors.BadLocation(f"key {key!r} would land outside {self.root}")
        if key and {"", ".", ".."} & set((key[:-1] if key.endswith("/") else key).split("/")):
            # S3 allows "a/../b" and "a//b"; on disk they would be "b" and "a/b", another key's file
            raise errors.BadLocation(f"key {key!r} holds an empty, '.' or '..' part: on disk it would be "
                                     f"{target.relative_to(self.root)}, which another key names")
        return target

    def close(self) -> None:
        """Nothing held open between calls."""

    def check(self, write: bool = False) -> None:
        if write:
            try:
                make_directories(self.root)
            except OSError as exc:
                raise errors.AccessDenied(f"cannot create directory {self.root}: {exc.strerror}") from exc
            if not os.access(self.root, os.W_OK):
                raise errors.AccessDenied(f"directory {self.root} is not writable")
        elif not self.root.is_dir():
            raise errors.NoSuchBucket(f"directory {self.root} does not exist")

    # -- reading -------------------------------------------------------------
    def list(self, prefix: str, *, recursive: bool = True, start_after: str | None = None,
             page_size: int = PAGE, first_page_size: int | None = None) -> Iterator[list[ObjectInfo]]:
        page: list[ObjectInfo] = []
        size = first_page_size or page_size
        for info in self._walk(self.root, "", prefix=prefix, recursive=recursive, after=start_after or ""):
            page.append(info)
            if len(page) == size:
                yield page
                page, size = [], page_size
        yield page

    def _walk(self, directory: Path, base: str, *, prefix: str, recursive: bool,
              after: str) -> Iterator[ObjectInfo]:
        """Objects under ``directory`` in key order (a directory sorts as ``name/``), depth first
        with a stack of its own: no tree is too deep for it."""
        stack = [iter(self._entries(directory, base))]
        while stack:
            key, entry = next(stack[-1], (None, None))
            if entry is None:
                stack.pop()
            elif _TEMP_NAME.fullmatch(entry.name):
                continue
            elif key.endswith("/"):
                if key < after and not after.startswith(key):
                    continue  # every key below sorts before ``after``
                if prefix.startswith(key) or (recursive and key.startswith(prefix)):
                    stack.append(iter(self._entries(Path(entry.path), key)))
            elif key > after and key.startswith(prefix) and (recursive or "/" not in key[len(prefix):]):
                if _is_file(entry):
                    try:
                        found = entry.stat()
                    except FileNotFoundError:
                        continue    # gone since the directory was read: as if listed a moment later
                    yield ObjectInfo(key, found.st_size, version(found))
                elif (problem := not_copied(entry.path)) is not None:
                    yield ObjectInfo(key, 0, None, problem=problem)

    def _entries(self, directory: Path, base: str) -> list:
        """(key, entry) of each entry of ``directory``, sorted by key."""
        try:
            with os.scandir(directory) as found:
                entries = list(found)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:  # unreadable: its files must not be left out without a word
            raise errors.AccessDenied(f"list {directory}: {exc.strerror}") from exc
        return sorted((base + (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in entries)

    def head(self, key: str) -> ObjectInfo | None:
        target = self.path(key)
        if key.endswith("/"):   # a folder marker (an empty S3 key ending in /) lands as a directory
            return ObjectInfo(key, 0, None) if target.is_dir() else None
        if not target.is_file():
            return None
        found = target.stat()
        return ObjectInfo(key, found.st_size, version(found))

    def problem(self, key: str) -> str | None:
        """Why the entry at ``key`` is no file to copy (as its listing says: a named pipe, a link
        to nothing …), or None (a file, or nothing there)."""
        self.path(key)      # inside the root
        entry = self.root / key
        if not os.path.lexists(entry) or entry.is_file() or entry.is_dir():
            return None
        return not_copied(str(entry))

    def attributes(self, key: str) -> ObjectAttributes:
        return ObjectAttributes(content_type=mimetypes.guess_type(key)[0] or "application/octet-stream")

    def checksum(self, key: str) -> str:
        """The file's MD5 (what a single-part S3 upload of it would have as its ETag)."""
        if key.endswith("/"):
            return hashlib.md5(usedforsecurity=False).hexdigest()      # a folder marker: no bytes
        return self._part_digests(key, None)[0].hex()

    def multipart_etag(self, key: str, part_size: int) -> str:
        """The ETag an S3 upload of the file in parts of ``part_size`` bytes would have."""
        return multipart_etag(self._part_digests(key, part_size))

    def _part_digests(self, key: str, part_size: int | None) -> list[bytes]:
        """The MD5 of each ``part_size`` bytes of the file (None: of all of it)."""
        digests, digest, left = [], hashlib.md5(usedforsecurity=False), part_size
        with self._open(key) as handle:
            while chunk := handle.read(min(1 << 20, left or 1 << 20)):
                digest.update(chunk)
                if part_size:
                    left -= len(chunk)
                    if not left:
                        digests.append(digest.digest())
                        digest, left = hashlib.md5(usedforsecurity=False), part_size
        if left != part_size or not digests:
            digests.append(digest.digest())
        return digests

    def _open(self, key: str):
        """The file for reading; a missing or unreadable one as the store error a user can act on
        (an unreadable one was an unexpected error, retried five times)."""
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise errors.NoSuchKey(f"read {self.spec.url(key)}: no such file") from None
        except PermissionError as exc:
            raise errors.AccessDenied(f"read {self.spec.url(key)}: {exc.strerror}: the user this "
                                      "process runs as may not read it") from None

    def get(self, key: str, *, etag: str | None, offset: int = 0, length: int | None = None) -> Download:
        handle = self._open(key)
        found = os.fstat(handle.fileno())
        if etag and etag != version(found):
            handle.close()
            raise errors.SourceChanged(f"read {self.spec.url(key)}: the file changed after the job was planned "
                                       f"(now {found.st_size} bytes): copy it again once it is complete")
        size = found.st_size
        handle.seek(offset)
        length = size - offset if length is None else length
        return Download(_Limited(handle, length, opened=version(found), what=f"read {self.spec.url(key)}"),
                        length, None, self.attributes(key))

    def tags(self, key: str) -> dict:
        return {}

    # -- writing -------------------------------------------------------------
    def put(self, key: str, data: bytes, *, md5: bytes, attrs: ObjectAttributes) -> str:
        target = self.path(key)
        if key.endswith("/"):
            # S3 consoles mark a folder with an empty key ending in /: here it is a directory
            if data:
                raise errors.StoreError(f"write {self.spec.url(key)}: a key ending in / names a directory, "
                                        f"which cannot hold {len(data)} bytes")
            with self._writing(key):
                make_directories(target)
            return md5.hex()
        temp = target.with_name(f"{_TEMP_MARK}{uuid.uuid4().hex}")
        with self._writing(key):
            make_directories(target.parent)
            try:
                with open(temp, "wb") as handle:
                    handle.write(data)
                os.replace(temp, target)
            except BaseException:
                temp.unlink(missing_ok=True)    # a failed write leaves nothing behind
                raise
        return md5.hex()

    @contextlib.contextmanager
    def _writing(self, key: str):
        """Translate OS errors while writing ``key`` into store errors a user can act on."""
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EIO, errno.EAGAIN, errno.EINTR):
                raise errors.TransientStoreError(f"write {self.spec.url(key)}: {exc.strerror}") from exc
            raise errors.StoreError(f"write {self.spec.url(key)}: {exc.strerror}") from exc

    def _upload_path(self, key: str, upload_id: str) -> Path:
        target = self.path(key)
        return target.with_name(f"{_TEMP_MARK}{upload_id}")

    def create_multipart(self, key: str, attrs: ObjectAttributes) -> str:
        upload_id = uuid.uuid4().hex
        temp = self._upload_path(key, upload_id)
        with self._writing(key):
            make_directories(temp.parent)
            temp.touch()
        return upload_id

    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes, *,
                    md5: bytes, offset: int) -> str:
        temp = self._upload_path(key, upload_id)
        try:
            fd = os.open(temp, os.O_WRONLY)
        except FileNotFoundError:
            raise errors.StoreError(f"write part {part_number} of {self.spec.url(key)}: "
                                    "NoSuchUpload: the upload was completed or aborted") from None
        try:
            with self._writing(key):
                os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        return md5.hex()

    def complete_multipart(self, key: str, upload_id: str, parts: list[dict]) -> str:
        temp = self._upload_path(key, upload_id)
        if not temp.exists():
            return ""   # completed by an earlier delivery of the same task
        expected = sum(p["size"] for p in parts)
        if temp.stat().st_size != expected:
            raise errors.VerificationFailed(
                f"complete {self.spec.url(key)}: {temp.stat().st_size} bytes written, {expected} expected")
        os.replace(temp, self.path(key))
        return ""

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._upload_path(key, upload_id).unlink(missing_ok=True)

    def delete(self, key: str, *, etag: str | None = None) -> None:
        """Remove the file; with ``etag`` (its listed ``version``) only while it is still that
        file: a move never deletes what changed after its copy was made."""
        target = self.path(key)
        if etag:
            try:
                found = target.stat()
            except FileNotFoundError:
                return
            if version(found) != etag:
                raise errors.SourceChanged(f"delete {self.spec.url(key)}: the file changed after it was "
                                           f"copied (now {found.st_size} bytes), so it stays")
        target.unlink(missing_ok=True)


def _is_file(entry: os.DirEntry) -> bool:
    """A regular file, through links; False for what cannot be followed (a link to itself raised
    ELOOP from ``is_file`` and failed the whole listing: ``not_copied`` says why instead)."""
    try:
        return entry.is_file()
    except OSError:
        return False


def version(found: os.stat_result) -> str:
    """A file's version, which its listing gives as an S3 listing gives ETags: its size and
    modification time. A read that names one is refused once the file is another (a frame still
    being rendered, a log still growing), as S3 refuses a read whose If-Match no longer holds;
    it is never taken for an MD5 (see ``pipeline.checksums``)."""
    return f"{found.st_size}-{found.st_mtime_ns}"


_SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_copied(path: str) -> str | None:
    """Why ``path``, neither a directory nor a regular file, is not copied (None: it is gone)."""
    try:
        found = os.stat(path)     # through a symbolic link
    except FileNotFoundError:
        try:
            return f"a symbolic link to {os.readlink(path)!r}, which does not exist: not copied"
        except OSError:
            return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror}): not copied"
    if stat.S_ISDIR(found.st_mode):
        # followed, a link to a parent would list forever
        return "a symbolic link to a directory: not followed (copy the directory it points to on its own)"
    kind = next((name for test, name in _SPECIAL_FILES if test(found.st_mode)), "not a regular file")
    return f"{kind}, not a regular file: not copied"


def make_directories(path: Path) -> None:
    """``path`` and whichever of its parents are missing, one level after the other: pathlib's
    and os's own are recursive, and a tree deeper than Python's recursion limit broke them."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():  # a file where a directory must be
                raise


class _Limited(io.RawIOBase):
    """Reads at most ``remaining`` bytes of ``handle``, then closes it. When they are read (or
    the file ends sooner), the file must still be the ``opened`` version: a file written while
    it was read would give a copy of neither its old bytes nor its new ones."""

    def __init__(self, handle, remaining: int, *, opened: str, what: str):
        self._handle, self._remaining = handle, remaining
        self._opened, self._what = opened, what

    def read(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        size = self._remaining if size < 0 else min(size, self._remaining)
        data = self._handle.read(size)
        self._remaining -= len(data)
        if self._remaining <= 0 or len(data) < size:
            now = os.fstat(self._handle.fileno())
            if version(now) != self._opened:
                raise errors.SourceChanged(f"{self._what}: the file changed while it was read (now {now.st_size} "
                                           "bytes): copy it again once it is complete")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._handle.close()
        super().close()
