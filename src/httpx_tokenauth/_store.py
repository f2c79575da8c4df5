"""The shared token store: one token for every process that shares a credential.

A store holds, per credential, one encrypted entry (the current token) and one
lease (who is fetching the next one). The token program talks to it in
operations, frozen values an interpreter hands to ``store.execute(op)`` or
``await store.aexecute(op)``::

    names = store.entry_names(identity)        # pure: keyed hashes, no I/O
    token = store.execute(Get(names))          # Token | None
    if token is None and store.execute(Lock(names, fence, ttl_ms=5_000)):
        ...fetch...
        store.execute(Put(names, token, ttl_ms=...))
        store.execute(Unlock(names, fence))

Every operation's result type is carried by the operation (``Get`` is a
``StoreOperation[Token | None]``), so ``execute`` returns it typed. Any
failure of the store itself (down, slow, a reply of the wrong shape) raises
:class:`StoreUnavailable`, which is not a TokenError: the program catches it
and falls back to in-process single flight (SPEC F5). An entry that does not
decrypt or parse is a miss, never an error.

What is stored (SPEC F1, F4): names are an HMAC-SHA256 of the identity under a
key derived (HKDF) from the encryption key; the value is
``v1.<fingerprint>.<AES-GCM(nonce, token JSON, aad=name)>``, where the
fingerprint is a short keyed HMAC of the access token, so a compare-and-delete
can run inside the store without decrypting (SPEC F3). JSON, never pickle: a
shared store must not be able to run code in its readers.

Documents: a grant configured by issuer shares the issuer's metadata through
``GetDocument`` / ``PutDocument`` under ``store.document_names(identity)``,
sealed like a token entry (the fingerprint is a keyed HMAC of the text). Only
stores that say ``shares_documents`` (the built-in ones, encrypted) are asked:
in plaintext, whoever can write to the store could name a token endpoint.

Key rotation: ``encryption_key=[new, old]``. The first key encrypts, names
the entry and the lease; every key decrypts, and reads also look under the
names derived from the older keys (``EntryNames.older``), so entries written
before the rotation are still used. While a fleet is half rotated, the two
halves hold separate leases, so a renewal can cost one token request per key
generation instead of one in all; once every process has the new list, drop
the old key.

This module imports only the standard library at import time; cryptography
loads when a store with an encryption key is built, anyio when an async
operation runs.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

from ._errors import ConfigurationError
from ._token import Token

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "DeleteIf",
    "EncryptionKey",
    "EntryNames",
    "Get",
    "GetDocument",
    "Lock",
    "Put",
    "PutDocument",
    "StoreOp",
    "StoreOperation",
    "StoreUnavailable",
    "TokenStore",
    "Unlock",
    "generate_encryption_key",
    "new_fence",
]

logger = logging.getLogger("httpx_tokenauth")

#: What ``encryption_key=`` takes: 32 random bytes, their url-safe base64 text,
#: a list of those (first encrypts, all decrypt), or None for plaintext.
EncryptionKey: TypeAlias = bytes | str | Sequence[bytes | str]

R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")

_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16  # of the entry name's HMAC: 128 bits, as 32 hex digits
_FINGERPRINT_BYTES = 16
#: Entries larger than this are garbage: a token response is capped at 1 MiB.
MAX_ENTRY_BYTES = 4 << 20
#: A shared document (server metadata, capped at 1 MiB when fetched) is at most this long.
MAX_DOCUMENT_CHARS = 2 << 20
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_FENCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_PREFIX = re.compile(r"[\x21-\x7a\x7c\x7e]{0,100}")  # visible ASCII without { and }
_ENCRYPTED = "v1"
_PLAINTEXT = "p1"
_HOW_TO_MAKE_A_KEY = (
    "make one with httpx_tokenauth.generate_encryption_key() (or "
    "`python -c 'import httpx_tokenauth; print(httpx_tokenauth.generate_encryption_key())'`), "
    "keep it in a secret store, and give every process the same one"
)
#: Fields of Token.extra that are never written to a shared store.
_NOT_STORED = frozenset({"refresh_token"})


class StoreUnavailable(Exception):  # noqa: N818 - the name says what the program sees
    """The shared store could not answer: down, slow, or a reply of the wrong shape.

    Internal: the token program catches it and falls back to in-process single
    flight, so it never reaches a caller (SPEC F5). Deliberately not a
    TokenError. The message names the store and the operation, never an entry's
    content or a secret; the underlying exception is the ``__cause__``.
    """


def generate_encryption_key() -> str:
    """A new random store encryption key: 32 bytes as url-safe base64 text (43 characters).

    Pass it (from a secret store or an environment variable) to every
    process's ``RedisTokenStore`` / ``FileTokenStore`` as ``encryption_key=``.
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(_KEY_BYTES)).rstrip(b"=").decode()


def new_fence() -> str:
    """A random lease fence value (128 bits, url-safe base64): only its holder can unlock."""
    return secrets.token_urlsafe(16)


# -- entry names and operations ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryNames:
    """Where one credential's entry and lease live in a store.

    ``entry`` and ``lock`` are derived from the first encryption key and are
    the ones written; ``older`` are the entry's names under the other keys of
    a rotation list, read and compare-deleted but never written. Every name is
    a keyed hash: no identifier appears in it. In Redis, entry and lock share
    one hash tag, so a cluster keeps them in one slot.
    """

    entry: str
    lock: str
    older: tuple[str, ...] = ()

    @property
    def reads(self) -> tuple[str, ...]:
        """The entry's names in the order they are read: the first key's, then older ones."""
        return (self.entry, *self.older)


class StoreOperation(abc.ABC, Generic[R_co]):
    """One store operation whose result is an ``R_co``.

    ``result`` checks that a value is of the operation's result type and
    returns it typed: an interpreter that received the value as ``object``
    (say, sent into a generator) recovers its type with ``op.result(value)``.
    A value of the wrong type is a store failure.
    """

    __slots__ = ()

    @abc.abstractmethod
    def result(self, value: object) -> R_co:
        """The value, typed; StoreUnavailable if it is not what this operation returns."""


def _check_names(names: object) -> None:
    if not isinstance(names, EntryNames):
        raise ConfigurationError(
            f"a store operation needs EntryNames from store.entry_names(identity), "
            f"got {type(names).__name__}"
        )


def _check_ttl(ttl_ms: object) -> None:
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise ConfigurationError(
            f"ttl_ms must be a positive whole number of milliseconds, got {ttl_ms!r}; "
            "a token that has already expired is not stored"
        )


def _check_fence(fence: object) -> None:
    if not isinstance(fence, str) or not _FENCE.fullmatch(fence):
        raise ConfigurationError(
            "a lease fence must be 16 to 128 url-safe base64 characters; use new_fence()"
        )


def _check_token(token: object) -> None:
    if not isinstance(token, Token):
        raise ConfigurationError(
            f"a store operation needs a Token, got {type(token).__name__}; "
            "failures are never stored"
        )


def _wrong_result(op: object, value: object) -> StoreUnavailable:
    return StoreUnavailable(
        f"token store answered {type(op).__name__} with a {type(value).__name__}"
    )


@dataclass(frozen=True, slots=True)
class Get(StoreOperation[Token | None]):
    """Read the entry: the Token, or None when it is absent, expired, or does not decrypt."""

    names: EntryNames

    def __post_init__(self) -> None:
        _check_names(self.names)

    def result(self, value: object) -> Token | None:
        """The Token or None."""
        if value is None or isinstance(value, Token):
            return value
        raise _wrong_result(self, value)


@dataclass(frozen=True, slots=True)
class Put(StoreOperation[None]):
    """Write the entry, encrypted, expiring after ``ttl_ms`` (the time to the token's expiry)."""

    names: EntryNames
    token: Token
    ttl_ms: int

    def __post_init__(self) -> None:
        _check_names(self.names)
        _check_token(self.token)
        _check_ttl(self.ttl_ms)

    def result(self, value: object) -> None:
        """None."""
        if value is not None:
            raise _wrong_result(self, value)


@dataclass(frozen=True, slots=True)
class Lock(StoreOperation[bool]):
    """Take the lease if nobody holds it (``SET NX PX``): True if this fence now holds it.

    The lease ends after ``ttl_ms`` by itself, so a holder that dies blocks
    the others only until then (SPEC F2).
    """

    names: EntryNames
    fence: str = field(repr=False)
    ttl_ms: int

    def __post_init__(self) -> None:
        _check_names(self.names)
        _check_fence(self.fence)
        _check_ttl(self.ttl_ms)

    def result(self, value: object) -> bool:
        """Whether the lease was taken."""
        if isinstance(value, bool):
            return value
        raise _wrong_result(self, value)


@dataclass(frozen=True, slots=True)
class Unlock(StoreOperation[bool]):
    """Release the lease, only if ``fence`` still holds it: True if it was released."""

    names: EntryNames
    fence: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_names(self.names)
        _check_fence(self.fence)

    def result(self, value: object) -> bool:
        """Whether the lease was released."""
        if isinstance(value, bool):
            return value
        raise _wrong_result(self, value)


@dataclass(frozen=True, slots=True)
class DeleteIf(StoreOperation[bool]):
    """Delete the entry only if it still holds ``token`` (atomic compare-and-delete, SPEC F3).

    True if an entry was deleted. A 401 for a token that was already replaced
    leaves the newer entry alone.
    """

    names: EntryNames
    token: Token

    def __post_init__(self) -> None:
        _check_names(self.names)
        _check_token(self.token)

    def result(self, value: object) -> bool:
        """Whether an entry was deleted."""
        if isinstance(value, bool):
            return value
        raise _wrong_result(self, value)


def _check_document(document: object) -> None:
    if not isinstance(document, str) or not document:
        raise ConfigurationError(
            f"a shared document is a non-empty str (JSON text), got {type(document).__name__}"
        )
    if len(document) > MAX_DOCUMENT_CHARS:
        raise ConfigurationError(
            f"a shared document is at most {MAX_DOCUMENT_CHARS} characters, got {len(document)}"
        )
    try:
        document.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            "a shared document must be valid Unicode text (it holds a lone surrogate)"
        ) from None


@dataclass(frozen=True, slots=True)
class GetDocument(StoreOperation[str | None]):
    """Read a shared document (metadata a process fetched): its text, or None for a miss.

    A miss is also an entry that does not decrypt, or whose fingerprint does
    not match: a document is used only as a process with the key wrote it.
    Names come from :meth:`TokenStore.document_names`.
    """

    names: EntryNames

    def __post_init__(self) -> None:
        _check_names(self.names)

    def result(self, value: object) -> str | None:
        """The document's text or None."""
        if value is None or isinstance(value, str):
            return value
        raise _wrong_result(self, value)


@dataclass(frozen=True, slots=True)
class PutDocument(StoreOperation[None]):
    """Write a shared document, encrypted like a token, expiring after ``ttl_ms``."""

    names: EntryNames
    document: str = field(repr=False)
    ttl_ms: int

    def __post_init__(self) -> None:
        _check_names(self.names)
        _check_document(self.document)
        _check_ttl(self.ttl_ms)

    def result(self, value: object) -> None:
        """None."""
        if value is not None:
            raise _wrong_result(self, value)


#: Every operation a store carries out, for interpreters that dispatch on it.
StoreOp: TypeAlias = Get | Put | Lock | Unlock | DeleteIf | GetDocument | PutDocument

_VERBS: dict[type, str] = {
    Get: "read an entry",
    Put: "write an entry",
    Lock: "take a lease",
    Unlock: "release a lease",
    DeleteIf: "delete an entry",
    GetDocument: "read a document",
    PutDocument: "write a document",
}


def verb(op: object) -> str:
    """What an operation does, for a failure message: "read an entry", "take a lease"."""
    return _VERBS.get(type(op), "answer")


# -- keys ----------------------------------------------------------------------------------


def _parse_key(key: object, position: str) -> bytes:
    """One encryption key as 32 bytes, or a ConfigurationError that never shows it."""
    if isinstance(key, (bytes, bytearray)):
        if len(key) == _KEY_BYTES:
            return bytes(key)
        raise ConfigurationError(
            f"encryption_key{position} is {len(key)} bytes; it must be exactly "
            f"{_KEY_BYTES} random bytes, or their url-safe base64 text as a str: "
            f"{_HOW_TO_MAKE_A_KEY}"
        )
    if isinstance(key, str):
        text = key.strip()
        if not _B64URL.fullmatch(text):
            raise ConfigurationError(
                f"encryption_key{position} is not url-safe base64 text (only A-Z a-z 0-9 - _ "
                f"and = padding); {_HOW_TO_MAKE_A_KEY}"
            )
        text = text.rstrip("=")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != _KEY_BYTES:
            raise ConfigurationError(
                f"encryption_key{position} must decode to {_KEY_BYTES} bytes, "
                f"got {len(raw)}; {_HOW_TO_MAKE_A_KEY}"
            )
        return raw
    raise ConfigurationError(
        f"encryption_key{position} must be {_KEY_BYTES} random bytes or their url-safe "
        f"base64 text, got {type(key).__name__}; {_HOW_TO_MAKE_A_KEY}"
    )


def _parse_keys(encryption_key: object) -> list[bytes] | None:
    if encryption_key is None:
        return None
    if isinstance(encryption_key, (bytes, bytearray, str)):
        return [_parse_key(encryption_key, "")]
    if isinstance(encryption_key, Sequence):
        keys = [_parse_key(k, f"[{i}]") for i, k in enumerate(encryption_key)]
        if not keys:
            raise ConfigurationError(
                "encryption_key is an empty list; give at least one key (the first "
                f"encrypts, all decrypt): {_HOW_TO_MAKE_A_KEY}"
            )
        return keys
    raise ConfigurationError(
        f"encryption_key must be a key or a list of keys, got {type(encryption_key).__name__}; "
        f"{_HOW_TO_MAKE_A_KEY}"
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    if not _B64URL.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


class _Generation:
    """The subkeys of one configured encryption key (or of plaintext mode)."""

    __slots__ = ("_aead", "_fingerprint_key", "_name_key", "marker")

    def __init__(self, key: bytes | None) -> None:
        if key is None:
            # Plaintext mode: the names and fingerprints are plain hashes (no secret).
            self._name_key = b"httpx-tokenauth store v1 plaintext names"
            self._fingerprint_key = b"httpx-tokenauth store v1 plaintext fingerprints"
            self._aead: AESGCM | None = None
            self.marker = _PLAINTEXT
            return
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

        def derive(purpose: bytes) -> bytes:
            hkdf = HKDF(hashes.SHA256(), length=32, salt=None, info=b"httpx-tokenauth " + purpose)
            return hkdf.derive(key)

        self._name_key = derive(b"store v1 entry names")
        self._fingerprint_key = derive(b"store v1 token fingerprints")
        self._aead = AESGCM(derive(b"store v1 aes-256-gcm"))
        self.marker = _ENCRYPTED

    def __repr__(self) -> str:
        return "<key>"

    def tag(self, encoded_identity: bytes) -> str:
        digest = hmac.new(self._name_key, encoded_identity, hashlib.sha256).digest()
        return digest[:_TAG_BYTES].hex()

    def fingerprint(self, data: bytes) -> str:
        """The start of every value whose fingerprint input is ``data``."""
        digest = hmac.new(self._fingerprint_key, data, hashlib.sha256).digest()
        return f"{self.marker}.{_b64(digest[:_FINGERPRINT_BYTES])}."

    def prefix(self, token: Token) -> str:
        """The start of every value that holds ``token``: what DeleteIf compares."""
        return self.fingerprint(token.access_token.encode())

    def seal_bytes(self, name: str, plaintext: bytes, fingerprint: str) -> str:
        if self._aead is None:
            return fingerprint + _b64(plaintext)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _associated_data(name))
        return fingerprint + _b64(nonce + sealed)

    def open_bytes(self, name: str, value: str) -> tuple[str, bytes] | None:
        """(fingerprint, plaintext) of a value sealed under ``name``, or None: a miss."""
        parts = value.split(".")
        if len(parts) != 3 or parts[0] != self.marker:
            return None
        body = _unb64(parts[2])
        if body is None:
            return None
        if self._aead is None:
            return f"{parts[0]}.{parts[1]}.", body
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415

        if len(body) < _NONCE_BYTES + 16:
            return None
        try:
            plaintext = self._aead.decrypt(
                body[:_NONCE_BYTES], body[_NONCE_BYTES:], _associated_data(name)
            )
        except InvalidTag:
            return None  # another key, another name, or tampered with: a miss
        return f"{parts[0]}.{parts[1]}.", plaintext

    def seal(self, name: str, token: Token) -> str:
        return self.seal_bytes(name, _serialize(token), self.prefix(token))

    def open(self, name: str, value: str) -> Token | None:
        opened = self.open_bytes(name, value)
        if opened is None:
            return None
        fingerprint, plaintext = opened
        token = _deserialize(plaintext)
        if token is None or not hmac.compare_digest(self.prefix(token), fingerprint):
            return None
        return token

    def seal_document(self, name: str, document: str) -> str:
        data = document.encode()
        return self.seal_bytes(name, data, self.fingerprint(data))

    def open_document(self, name: str, value: str) -> str | None:
        opened = self.open_bytes(name, value)
        if opened is None:
            return None
        fingerprint, plaintext = opened
        if not hmac.compare_digest(self.fingerprint(plaintext), fingerprint):
            return None
        try:
            return plaintext.decode()
        except UnicodeDecodeError:
            return None


def _associated_data(name: str) -> bytes:
    return b"httpx-tokenauth store v1 entry " + name.encode()


def _encode_identity(identity: object) -> bytes:
    """A canonical, length-prefixed encoding: ("ab", "c") and ("a", "bc") differ."""
    if not isinstance(identity, tuple) or not identity:
        raise ConfigurationError(
            "a store identity is a non-empty tuple of strings (everything that shapes the token)"
        )
    parts = [b"httpx-tokenauth identity v1", len(identity).to_bytes(4, "big")]
    for element in identity:
        if not isinstance(element, str):
            raise ConfigurationError(
                f"every part of a store identity must be a str, got {type(element).__name__}"
            )
        try:
            data = element.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(
                "a store identity part is not valid Unicode text (lone surrogate)"
            ) from None
        parts.append(len(data).to_bytes(4, "big"))
        parts.append(data)
    return b"".join(parts)


# -- serialization -------------------------------------------------------------------------


def _serialize(token: Token) -> bytes:
    """JSON (never pickle). ``refresh_token`` is dropped; so is an ``extra`` JSON cannot hold."""
    fields: dict[str, object] = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_at": token.expires_at,
        "received_at": token.received_at,
        "scope": None if token.scope is None else list(token.scope),
    }
    if token.issued_token_type is not None:  # RFC 8693: an N_A token is nothing without it
        fields["issued_token_type"] = token.issued_token_type
    extra = {k: v for k, v in token.extra.items() if k not in _NOT_STORED}
    try:
        fields["extra"] = json.loads(json.dumps(extra, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        logger.debug("token store: Token.extra is not JSON-serializable; stored without it")
        fields["extra"] = {}
    return json.dumps(fields, separators=(",", ":"), allow_nan=False).encode()


def _number_or_none(value: object) -> bool:
    return value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )


def _deserialize(data: bytes) -> Token | None:
    try:
        fields = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(fields, dict):
        return None
    scope = fields.get("scope")
    extra = fields.get("extra", {})
    issued = fields.get("issued_token_type")
    if (
        not isinstance(fields.get("access_token"), str)
        or not isinstance(fields.get("token_type"), str)
        or not _number_or_none(fields.get("expires_at"))
        or not _number_or_none(fields.get("received_at"))
        or not (
            scope is None or (isinstance(scope, list) and all(isinstance(s, str) for s in scope))
        )
        or not isinstance(extra, dict)
        or not (issued is None or isinstance(issued, str))
    ):
        return None
    try:
        return Token(
            fields["access_token"],
            token_type=fields["token_type"],
            expires_at=fields.get("expires_at"),
            received_at=fields.get("received_at"),
            scope=None if scope is None else tuple(scope),
            extra=MappingProxyType(extra),
            issued_token_type=issued,
        )
    except ConfigurationError:
        return None


def _as_text(value: bytes | str) -> str | None:
    """A stored value as text; None for anything that cannot be one of ours."""
    if len(value) > MAX_ENTRY_BYTES:
        return None
    if isinstance(value, str):
        return value
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def check_timeout(timeout: object) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigurationError(
            f"timeout must be a positive number of seconds (a store operation's bound, "
            f"well under the API's own), got {timeout!r}"
        )
    return float(timeout)


# -- the store -----------------------------------------------------------------------------


class TokenStore(abc.ABC):
    """A token cache shared by processes: RedisTokenStore, FileTokenStore.

    Give one to ``TokenAuth(..., store=...)``; every process with the same
    credential and the same ``encryption_key`` then shares one token and one
    fetch. The per-process cache stays in front of it: a fresh token is never
    read from the store.

    ``timeout`` is how long one store operation may take before it counts as
    a failure (the caller then falls back to fetching in-process).
    Subclasses implement :meth:`execute` and :meth:`aexecute` for every
    operation in :data:`StoreOp`, raising :class:`StoreUnavailable` for any
    failure of the store.
    """

    timeout: float

    def __init__(
        self, *, encryption_key: EncryptionKey | None, timeout: float, prefix: str = ""
    ) -> None:
        self.timeout = check_timeout(timeout)
        #: Set while the store is failing (every TokenAuth using it warns once per outage).
        self.outage = False
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise ConfigurationError(
                "prefix must be at most 100 visible ASCII characters without { or } "
                "(braces would break the hash tag that keeps an entry and its lock together)"
            )
        self._prefix = prefix
        keys = _parse_keys(encryption_key)
        if keys is None:
            self._generations: tuple[_Generation, ...] = (_Generation(None),)
            logger.warning(
                "%s created with encryption_key=None: access tokens are stored in "
                "plaintext, readable by anyone who can read the store; %s",
                type(self).__name__,
                _HOW_TO_MAKE_A_KEY,
            )
        else:
            self._generations = tuple(_Generation(k) for k in keys)

    @property
    def encrypted(self) -> bool:
        """Whether entries are encrypted (False only for ``encryption_key=None``)."""
        return self._generations[0].marker == _ENCRYPTED

    def entry_names(self, identity: tuple[str, ...]) -> EntryNames:
        """The names of the entry and lease for ``identity``. Pure: no I/O.

        ``identity`` is everything that shapes the token (SPEC F1), as strings;
        it is hashed with a key derived from the encryption key, so no part of
        it appears in the store.
        """
        encoded = _encode_identity(identity)
        tags = [g.tag(encoded) for g in self._generations]
        base = [f"{self._prefix}{{{tag}}}" for tag in tags]
        return EntryNames(
            entry=f"{base[0]}:token",
            lock=f"{base[0]}:lock",
            older=tuple(f"{b}:token" for b in base[1:]),
        )

    def document_names(self, identity: tuple[str, ...]) -> EntryNames:
        """Where the shared document for ``identity`` lives (GetDocument, PutDocument).

        Keyed hashes like :meth:`entry_names`, under a suffix of their own, so
        a document and a token never share a name.
        """
        names = self.entry_names(identity)
        return EntryNames(
            entry=names.entry[: -len("token")] + "document",
            lock=names.lock[: -len("lock")] + "document-lock",
            older=tuple(n[: -len("token")] + "document" for n in names.older),
        )

    @property
    def shares_documents(self) -> bool:
        """Whether processes share fetched metadata through this store (GetDocument).

        Only with encryption: an authenticated entry is one a process holding
        the key wrote. In plaintext anyone who can write to the store could
        name another token endpoint, and credentials would go there; so each
        process fetches metadata itself. Stores that do not carry out the
        document operations say False.
        """
        return self.documents and self.encrypted

    #: Whether this store carries out GetDocument and PutDocument (the built-in ones do).
    documents: bool = False

    # What backends build on: each name of ``names.reads`` pairs with one generation.

    def _seal(self, names: EntryNames, token: Token) -> str:
        return self._generations[0].seal(names.entry, token)

    def _open(self, index: int, name: str, value: bytes | str) -> Token | None:
        if index >= len(self._generations):
            return None
        text = _as_text(value)
        return None if text is None else self._generations[index].open(name, text)

    def _seal_document(self, names: EntryNames, document: str) -> str:
        return self._generations[0].seal_document(names.entry, document)

    def _open_document(self, index: int, name: str, value: bytes | str) -> str | None:
        if index >= len(self._generations):
            return None
        text = _as_text(value)
        return None if text is None else self._generations[index].open_document(name, text)

    def _markers(self, names: EntryNames, token: Token) -> list[tuple[str, str]]:
        """(name, value prefix) pairs for a compare-and-delete of ``token`` under every key."""
        return [(n, g.prefix(token)) for n, g in zip(names.reads, self._generations, strict=False)]

    @abc.abstractmethod
    def execute(self, op: StoreOperation[T]) -> T:
        """Carry out one operation, blocking; StoreUnavailable if the store fails."""

    @abc.abstractmethod
    async def aexecute(self, op: StoreOperation[T]) -> T:
        """Carry out one operation without blocking the event loop (asyncio or trio)."""

    def close(self) -> None:  # noqa: B027 - stores that hold nothing need not override it
        """Release what the store opened itself (clients it created). Never a client you passed."""

    async def aclose(self) -> None:  # noqa: B027
        """Release what the store opened itself for the current event loop."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()}, timeout={self.timeout!r})"

    def _describe(self) -> str:
        keys = len(self._generations) if self.encrypted else 0
        return f"encrypted={self.encrypted!r}, keys={keys}"
