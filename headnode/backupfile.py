"""The backup file: a gzip-compressed tar of named members, optionally encrypted.

A plain backup is an ordinary ``.tar.gz`` (``tar xzf`` opens it) holding
``manifest.json``, ``cloudmover.db`` and ``secret.key``. An encrypted backup is
that same archive sealed with a key derived from a passphrase:

    MAGIC (9 bytes: b"CMBACKUP" + container version 1)
    header length (4 bytes, big-endian) + header (JSON: cipher, kdf and its
        parameters, salt, nonce prefix, chunk size, key check)
    records: the archive in chunks of ``chunk_size`` bytes, each AES-256-GCM
        encrypted (ciphertext + 16-byte tag), the last one possibly shorter

The key is scrypt(passphrase, salt). Each record's nonce is the 7-byte nonce
prefix, the record number (4 bytes) and a last-record flag (1 byte), and the
magic and header are its associated data, so records cannot be reordered,
dropped, cut off at the end or moved between files, and the header cannot be
altered, without the decryption failing. The key check (an HMAC of a constant
under the key) tells a wrong passphrase apart from a damaged file.

Everything read here is untrusted: every failure is a ``BadBackup`` with a
message for the person restoring, and members are written only to the paths
the caller names, never where the archive says.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import struct
import tarfile
import zlib
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from headnode.accesserrors import Refused

MAGIC = b"CMBACKUP\x01"
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
TAG = 16
SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}
LIMITS = {"n": 1 << 20, "r": 32, "p": 16, "chunk_size": 64 << 20, "header": 4096}
SCRYPT_MEMORY = 256 << 20        # bytes scrypt may take (128 * n * r): a forged header cannot ask for more
CHECK_LABEL = b"cloudmover backup key check"
COPY_BLOCK = 1 << 20


class BadBackup(Refused):
    """The file is not a backup this server can restore; nothing was changed."""
    code = "bad_backup"


def is_encrypted(path: Path) -> bool:
    with open(path, "rb") as handle:
        start = handle.read(len(MAGIC))
    if start == MAGIC:
        return True
    if start[:2] == GZIP_MAGIC:
        return False
    raise BadBackup("This is not a CloudMover backup file (it is neither an encrypted backup nor a "
                    "compressed archive).")


# -- writing ---------------------------------------------------------------------------------
def pack(members: dict[str, Path], out: Path) -> None:
    """Write ``members`` (archive name -> file) as a .tar.gz at ``out``, in the order given."""
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in members.items():
            info = archive.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o600
            with open(path, "rb") as handle:
                archive.addfile(info, handle)


def encrypt(plain: Path, out: Path, passphrase: str, *, chunk_size: int = CHUNK) -> None:
    """Seal the file ``plain`` into ``out`` with a key derived from ``passphrase``."""
    salt, prefix = os.urandom(16), os.urandom(7)
    key = _derive(passphrase, salt, SCRYPT)
    header = json.dumps({"cipher": "AES-256-GCM", "kdf": "scrypt", **SCRYPT, "salt": _b64(salt),
                         "nonce_prefix": _b64(prefix), "chunk_size": chunk_size,
                         "check": _b64(_check(key))}, sort_keys=True).encode()
    associated = MAGIC + struct.pack(">I", len(header)) + header
    aead = AESGCM(key)
    with open(plain, "rb") as source, open(out, "wb") as sink:
        sink.write(associated)
        index, chunk = 0, source.read(chunk_size)
        while True:
            following = source.read(chunk_size)
            last = not following
            sink.write(aead.encrypt(_nonce(prefix, index, last), chunk, associated))
            if last:
                return
            index, chunk = index + 1, following


# -- reading ---------------------------------------------------------------------------------
def decrypt(sealed: Path, out: Path, passphrase: str | None) -> None:
    """Open the encrypted backup ``sealed`` into the plain archive ``out``."""
    if not passphrase:
        raise BadBackup("This backup is encrypted: give the passphrase it was made with.")
    with open(sealed, "rb") as source, open(out, "wb") as sink:
        associated, header = _read_header(source)
        key = _derive(passphrase, header["salt"], header)
        if not hmac.compare_digest(_check(key), header["check"]):
            raise BadBackup("The passphrase is wrong: this backup was encrypted with another one.")
        aead, record = AESGCM(key), header["chunk_size"] + TAG
        index, sealed_chunk = 0, source.read(record)
        while True:
            following = source.read(record)
            last = not following
            try:
                sink.write(aead.decrypt(_nonce(header["nonce_prefix"], index, last), sealed_chunk, associated))
            except InvalidTag:
                raise BadBackup(_damage(aead, header, index, sealed_chunk, associated, last)) from None
            if last:
                return
            index, sealed_chunk = index + 1, following


def _damage(aead, header: dict, index: int, sealed_chunk: bytes, associated: bytes, last: bool) -> str:
    if last:
        try:   # a whole record that was not written as the last one: the file was cut short
            aead.decrypt(_nonce(header["nonce_prefix"], index, False), sealed_chunk, associated)
            return "The backup file is truncated: it ends before its last part. Copy it again."
        except InvalidTag:
            pass
    return (f"The backup file is damaged or truncated: part {index + 1} fails its integrity check "
            "(the passphrase is right). Copy it again from where it was stored.")


def _read_header(source) -> tuple[bytes, dict]:
    start = source.read(len(MAGIC) + 4)
    if start[:len(MAGIC)] != MAGIC or len(start) < len(MAGIC) + 4:
        raise BadBackup("This is not an encrypted CloudMover backup file.")
    (length,) = struct.unpack(">I", start[len(MAGIC):])
    if length > LIMITS["header"]:
        raise BadBackup("The backup file's header is damaged.")
    raw = source.read(length)
    try:
        header = json.loads(raw)
        parsed = {"cipher": header["cipher"], "kdf": header["kdf"], "n": int(header["n"]),
                  "r": int(header["r"]), "p": int(header["p"]), "chunk_size": int(header["chunk_size"]),
                  "salt": _unb64(header["salt"]), "nonce_prefix": _unb64(header["nonce_prefix"]),
                  "check": _unb64(header["check"])}
    except (ValueError, KeyError, TypeError):
        raise BadBackup("The backup file's header is damaged.") from None
    if (parsed["cipher"], parsed["kdf"]) != ("AES-256-GCM", "scrypt") or len(parsed["nonce_prefix"]) != 7:
        raise BadBackup("The backup file uses an encryption this server does not know; restore it with "
                        "the CloudMover version that made it.")
    for name in ("n", "r", "p", "chunk_size"):
        if not 1 <= parsed[name] <= LIMITS[name]:
            raise BadBackup("The backup file's header is damaged.")
    n = parsed["n"]
    if n < 2 or n & (n - 1) or 128 * n * parsed["r"] > SCRYPT_MEMORY:
        raise BadBackup("The backup file's header is damaged.")
    return start + raw, parsed


def unpack(archive_path: Path, wanted: dict[str, Path]) -> None:
    """Extract the members named in ``wanted`` (archive name -> destination file) from the
    .tar.gz at ``archive_path``; any other member, link or directory makes it foreign."""
    found = set()
    try:
        with gzip.open(archive_path, "rb") as whole:   # to its end: checks the length and CRC of all of it
            while whole.read(COPY_BLOCK):
                pass
        with tarfile.open(archive_path, mode="r:gz") as archive:
            for member in archive:
                if member.name not in wanted or not member.isfile() or member.name in found:
                    raise BadBackup(f"This is not a CloudMover backup: it holds {member.name!r}, which a "
                                    "backup never does.")
                found.add(member.name)
                stream = archive.extractfile(member)
                fd = os.open(wanted[member.name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as sink:
                    while block := stream.read(COPY_BLOCK):
                        sink.write(block)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise BadBackup(f"The backup file is damaged or truncated ({_reason(exc)}). "
                        "Copy it again from where it was stored.") from None
    missing = sorted(set(wanted) - found)
    if missing:
        raise BadBackup(f"This is not a complete CloudMover backup: it lacks {', '.join(missing)}.")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(COPY_BLOCK):
            digest.update(block)
    return digest.hexdigest()


# -- helpers ------------------------------------------------------------------------------
def _derive(passphrase: str, salt: bytes, params: dict) -> bytes:
    return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(passphrase.encode())


def _check(key: bytes) -> bytes:
    return hmac.new(key, CHECK_LABEL, hashlib.sha256).digest()[:16]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 1 << 32:
        raise BadBackup("The backup file is too large for its format.")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__
