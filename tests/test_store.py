"""The token store's pure parts: keys, entry names, operations, reprs. No server, no I/O.

What a store does against a real Valkey and a real SQLite file is in
test_store_backends.py.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from httpx_tokenauth import (
    ConfigurationError,
    FileTokenStore,
    RedisTokenStore,
    Token,
    TokenError,
    generate_encryption_key,
)
from httpx_tokenauth._store import (
    DeleteIf,
    EntryNames,
    Get,
    Lock,
    Put,
    StoreUnavailable,
    Unlock,
    new_fence,
)

RAW_KEY = bytes(range(32))
KEY = base64.urlsafe_b64encode(RAW_KEY).decode()  # with padding
OTHER_KEY = generate_encryption_key()
IDENTITY = ("https://as.example/token", "billing-service", "client_credentials", "invoices:read")


def redis_store(**options: Any) -> RedisTokenStore:
    """A RedisTokenStore on a client that is never used (redis-py connects lazily)."""
    options.setdefault("encryption_key", KEY)
    return RedisTokenStore(redis.Redis(host="127.0.0.1", port=9, socket_timeout=0.1), **options)


# -- encryption keys -----------------------------------------------------------------------


def test_f7_generated_keys_are_32_random_bytes_in_url_safe_base64() -> None:
    """generate_encryption_key() gives 43 url-safe characters that decode to 32 fresh bytes."""
    keys = {generate_encryption_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key)
        assert len(base64.urlsafe_b64decode(key + "=")) == 32
    redis_store(encryption_key=keys.pop())  # accepted as it is


@pytest.mark.parametrize(
    "form",
    [
        RAW_KEY,
        bytearray(RAW_KEY),
        KEY,
        KEY.rstrip("="),
        f"  {KEY}\n",
        [KEY],
        (RAW_KEY,),
    ],
    ids=["bytes", "bytearray", "padded", "unpadded", "whitespace", "list", "tuple"],
)
def test_f7_every_accepted_form_of_a_key_is_the_same_key(form: Any) -> None:
    """Raw bytes, base64 text with or without padding, and a one-key list name entries alike."""
    assert redis_store(encryption_key=form).entry_names(IDENTITY) == redis_store().entry_names(
        IDENTITY
    )


BAD_KEYS = [
    pytest.param(b"\x01" * 16, "16 bytes", id="16-bytes"),
    pytest.param(b"\x01" * 33, "33 bytes", id="33-bytes"),
    pytest.param("", "base64", id="empty-text"),
    pytest.param("not a key at all!", "base64", id="not-base64"),
    pytest.param(base64.b64encode(b"\xfb" * 32).decode(), "url-safe", id="standard-alphabet"),
    pytest.param(base64.urlsafe_b64encode(b"\x02" * 31).decode(), "got 31", id="31-bytes-text"),
    pytest.param(base64.urlsafe_b64encode(b"\x02" * 32), "44 bytes", id="text-as-bytes"),
    pytest.param(42, "got int", id="int"),
    pytest.param([], "empty list", id="empty-list"),
    pytest.param([KEY, "short"], "encryption_key[1]", id="bad-second-key"),
    pytest.param({"key": KEY}, "got dict", id="dict"),
    pytest.param([KEY, 42], "encryption_key[1] must be", id="int-in-list"),
]


@pytest.mark.parametrize(("key", "says"), BAD_KEYS)
def test_f7_a_bad_key_is_refused_at_construction_saying_how_to_make_one(
    key: Any, says: str, tmp_path: Path
) -> None:
    """Anything but 32 bytes (or their url-safe base64) is a ConfigurationError naming the fix."""
    for build in (
        lambda: redis_store(encryption_key=key),
        lambda: FileTokenStore(tmp_path, encryption_key=key),
    ):
        with pytest.raises(ConfigurationError) as caught:
            build()
        message = str(caught.value)
        assert says in message
        assert "generate_encryption_key()" in message
        if isinstance(key, str) and len(key) > 8:
            assert key not in message  # the bad key is not echoed


def test_f7_the_encryption_key_must_be_given(tmp_path: Path) -> None:
    """encryption_key is a required keyword: leaving it out is a TypeError, not plaintext."""
    with pytest.raises(TypeError, match="encryption_key"):
        FileTokenStore(tmp_path)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="encryption_key"):
        RedisTokenStore(redis.Redis())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="encryption_key"):
        RedisTokenStore.from_url("redis://127.0.0.1:9/0")  # type: ignore[call-arg]


def test_f7_plaintext_is_a_visible_choice_that_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """encryption_key=None builds a plaintext store and logs exactly one WARNING saying so."""
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        store = redis_store(encryption_key=None)
        store.entry_names(IDENTITY)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "plaintext" in warnings[0].getMessage()
    assert store.encrypted is False
    assert redis_store().encrypted is True
    assert store.entry_names(IDENTITY) != redis_store().entry_names(IDENTITY)


# -- entry names (SPEC F1) -----------------------------------------------------------------


def test_f1_names_are_keyed_hashes_that_share_a_hash_tag() -> None:
    """Entry and lock are <prefix>{<128-bit HMAC>}:token / :lock; no identity part in clear."""
    names = redis_store().entry_names(IDENTITY)
    entry = re.fullmatch(r"httpx-tokenauth:\{([0-9a-f]{32})\}:token", names.entry)
    lock = re.fullmatch(r"httpx-tokenauth:\{([0-9a-f]{32})\}:lock", names.lock)
    assert entry
    assert lock
    assert entry.group(1) == lock.group(1)
    assert names.older == ()
    assert names.reads == (names.entry,)
    for part in ("as.example", "billing", "client_credentials", "invoices"):
        assert part not in repr(names)


def test_f1_the_identity_encoding_is_length_prefixed() -> None:
    """("ab", "c") and ("a", "bc") are different credentials, and so are ("a",) and ("a", "")."""
    store = redis_store()
    assert store.entry_names(("ab", "c")) != store.entry_names(("a", "bc"))
    assert store.entry_names(("a",)) != store.entry_names(("a", ""))
    assert store.entry_names(("a", "b")) == store.entry_names(("a", "b"))


@pytest.mark.parametrize("position", range(len(IDENTITY)))
def test_f1_changing_any_part_of_the_identity_changes_both_names(position: int) -> None:
    """One changed part of the identity gives another entry and another lease."""
    store = redis_store()
    changed = list(IDENTITY)
    changed[position] += "x"
    one, other = store.entry_names(IDENTITY), store.entry_names(tuple(changed))
    assert one.entry != other.entry
    assert one.lock != other.lock


def test_f1_names_depend_on_the_key_and_the_prefix(tmp_path: Path) -> None:
    """Another key or prefix names another entry; the same key names the same one in any store."""
    ours = redis_store().entry_names(IDENTITY)
    assert redis_store(encryption_key=OTHER_KEY).entry_names(IDENTITY).entry != ours.entry
    assert redis_store(prefix="billing:").entry_names(IDENTITY).entry.startswith("billing:{")
    unprefixed = redis_store(prefix="").entry_names(IDENTITY)
    assert unprefixed.entry == ours.entry.removeprefix("httpx-tokenauth:")
    assert FileTokenStore(tmp_path, encryption_key=KEY).entry_names(IDENTITY) == unprefixed


def test_f8_under_rotation_the_first_key_names_and_older_keys_are_read() -> None:
    """With [new, old], entry and lock are the new key's; the old key's entry name is read too."""
    rotating = redis_store(encryption_key=[OTHER_KEY, KEY]).entry_names(IDENTITY)
    new = redis_store(encryption_key=OTHER_KEY).entry_names(IDENTITY)
    old = redis_store().entry_names(IDENTITY)
    assert (rotating.entry, rotating.lock) == (new.entry, new.lock)
    assert rotating.older == (old.entry,)
    assert rotating.reads == (new.entry, old.entry)


@pytest.mark.parametrize(
    "identity",
    [(), ["a", "b"], "abc", ("a", 1), ("a", None), ("\ud800",)],
    ids=["empty", "list", "str", "int-part", "none-part", "surrogate"],
)
def test_f1_an_identity_that_is_not_a_tuple_of_text_is_refused(identity: Any) -> None:
    """entry_names wants a non-empty tuple of str; anything else is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="identity"):
        redis_store().entry_names(identity)


@pytest.mark.parametrize("prefix", ["{tag}", "a}", "with space", "x" * 101, 7])
def test_a_prefix_that_would_break_the_hash_tag_is_refused(prefix: Any) -> None:
    """Braces, spaces, overlong or non-text prefixes are a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="prefix"):
        redis_store(prefix=prefix)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "0.5", None])
def test_a_timeout_that_is_not_a_positive_number_is_refused(timeout: Any, tmp_path: Path) -> None:
    """Every store refuses a timeout that is not a finite number of seconds above zero."""
    with pytest.raises(ConfigurationError, match="timeout"):
        redis_store(timeout=timeout)
    with pytest.raises(ConfigurationError, match="timeout"):
        FileTokenStore(tmp_path, encryption_key=KEY, timeout=timeout)
    with pytest.raises(ConfigurationError, match="timeout"):
        RedisTokenStore.from_url("redis://127.0.0.1:9/0", encryption_key=KEY, timeout=timeout)


# -- operations ----------------------------------------------------------------------------

NAMES = EntryNames(entry="{x}:token", lock="{x}:lock")
TOKEN = Token("access-token-value-0123456789")


@pytest.mark.parametrize(
    "build",
    [
        lambda: Get("{x}:token"),  # type: ignore[arg-type]
        lambda: Put(NAMES, TOKEN, 0),
        lambda: Put(NAMES, TOKEN, -5),
        lambda: Put(NAMES, TOKEN, 1.5),  # type: ignore[arg-type]
        lambda: Put(NAMES, TOKEN, True),
        lambda: Put(NAMES, "not a token", 1000),  # type: ignore[arg-type]
        lambda: Put(NAMES, None, 1000),  # type: ignore[arg-type]
        lambda: Lock(NAMES, "short", 1000),
        lambda: Lock(NAMES, "has spaces in it, sixteen+", 1000),
        lambda: Lock(NAMES, new_fence(), 0),
        lambda: Unlock(NAMES, 12345678901234567890),  # type: ignore[arg-type]
        lambda: DeleteIf(NAMES, "access-token-value"),  # type: ignore[arg-type]
    ],
    ids=[
        "get-str-names",
        "put-ttl-zero",
        "put-ttl-negative",
        "put-ttl-float",
        "put-ttl-bool",
        "put-str-token",
        "put-no-token",
        "lock-short-fence",
        "lock-bad-fence",
        "lock-ttl-zero",
        "unlock-int-fence",
        "delete-if-str-token",
    ],
)
def test_operations_check_their_arguments_when_built(build: Any) -> None:
    """A wrong argument to an operation is a ConfigurationError before it reaches a store
    (so a failure, or anything but a Token, can never be written)."""
    with pytest.raises(ConfigurationError):
        build()


def test_an_operation_types_its_result_and_refuses_a_wrong_one() -> None:
    """op.result() hands back a value of the operation's type, else StoreUnavailable."""
    fence = new_fence()
    assert Get(NAMES).result(TOKEN) is TOKEN
    assert Get(NAMES).result(None) is None
    Put(NAMES, TOKEN, 1000).result(None)  # None is Put's only result: no exception
    assert Lock(NAMES, fence, 1000).result(True) is True
    assert Unlock(NAMES, fence).result(False) is False
    assert DeleteIf(NAMES, TOKEN).result(True) is True
    wrong: list[tuple[Any, object]] = [
        (Get(NAMES), "a token as text"),
        (Put(NAMES, TOKEN, 1000), True),
        (Lock(NAMES, fence, 1000), 1),
        (Unlock(NAMES, fence), None),
        (DeleteIf(NAMES, TOKEN), b"OK"),
    ]
    for op, value in wrong:
        with pytest.raises(StoreUnavailable, match=type(op).__name__):
            op.result(value)


def test_store_unavailable_is_internal_not_a_token_error() -> None:
    """The program catches StoreUnavailable to fall back; it is deliberately not a TokenError."""
    assert issubclass(StoreUnavailable, Exception)
    assert not issubclass(StoreUnavailable, TokenError)


def test_fences_are_random_and_url_safe() -> None:
    """new_fence() gives a different 22-character url-safe value each time."""
    fences = {new_fence() for _ in range(1000)}
    assert len(fences) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", f) for f in fences)


# -- secrets stay out of reprs -------------------------------------------------------------


def test_reprs_carry_no_key_token_or_fence(tmp_path: Path) -> None:
    """Stores and operations print no key (in any encoding), access token or fence."""
    fence = new_fence()
    secrets = [
        KEY,
        KEY.rstrip("="),
        RAW_KEY.hex(),
        repr(RAW_KEY),
        OTHER_KEY,
        TOKEN.access_token,
        fence,
    ]
    stores = [
        redis_store(encryption_key=[KEY, OTHER_KEY]),
        RedisTokenStore.from_url("redis://:pa55word@127.0.0.1:9/0", encryption_key=RAW_KEY),
        FileTokenStore(tmp_path, encryption_key=[RAW_KEY, OTHER_KEY]),
    ]
    ops = [Put(NAMES, TOKEN, 1000), Lock(NAMES, fence, 1000), Unlock(NAMES, fence)]
    ops += [DeleteIf(NAMES, TOKEN)]
    shown = " ".join(f"{thing!r} {thing}" for thing in [*stores, *ops])
    shown += " ".join(repr(vars(store)) for store in stores)  # even a debugging dump
    for secret in [*secrets, "pa55word"]:
        assert secret not in shown
    assert (
        "RedisTokenStore(prefix='httpx-tokenauth:', encrypted=True, keys=2, timeout=0.5)" in shown
    )
    for store in stores:
        store.close()


# -- building a RedisTokenStore ------------------------------------------------------------


def test_redis_store_needs_a_client_of_the_right_kind() -> None:
    """No client, a client in the wrong slot, or a non-client is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="from_url"):
        RedisTokenStore(encryption_key=KEY)
    with pytest.raises(ConfigurationError, match="pass it as async_client="):
        RedisTokenStore(redis.asyncio.Redis(), encryption_key=KEY)
    with pytest.raises(ConfigurationError, match="pass it as client="):
        RedisTokenStore(async_client=redis.Redis(), encryption_key=KEY)
    with pytest.raises(ConfigurationError, match="redis-py client"):
        RedisTokenStore(object(), encryption_key=KEY)  # type: ignore[arg-type]


def test_redis_store_warns_when_a_blocking_client_has_no_socket_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A blocking client without socket_timeout could hang callers: one WARNING says so."""
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        RedisTokenStore(redis.Redis(socket_timeout=0.5), encryption_key=KEY)
        assert caplog.records == []
        RedisTokenStore(redis.Redis(socket_timeout=None), encryption_key=KEY)
    (record,) = caplog.records
    assert "socket_timeout" in record.getMessage()


@pytest.mark.parametrize(
    "url", ["http://cache:6379", "cache:6379", "", "redis://cache:notaport/0", 6379]
)
def test_from_url_refuses_what_is_not_a_redis_url(url: Any) -> None:
    """from_url wants a redis://, rediss:// or unix:// URL that redis-py can read."""
    with pytest.raises(ConfigurationError, match="url"):
        RedisTokenStore.from_url(url, encryption_key=KEY)


def test_an_async_only_store_tells_sync_callers_what_to_pass() -> None:
    """With only async_client, execute() is a ConfigurationError naming client=, before any I/O."""
    store = RedisTokenStore(async_client=redis.asyncio.Redis(port=9), encryption_key=KEY)
    with pytest.raises(ConfigurationError, match=r"client=redis\.Redis"):
        store.execute(Get(store.entry_names(IDENTITY)))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_an_async_only_store_tells_trio_callers_what_to_pass(anyio_backend: str) -> None:
    """redis.asyncio runs on asyncio only: under trio the store asks for a blocking client."""
    store = RedisTokenStore(async_client=redis.asyncio.Redis(port=9), encryption_key=KEY)
    with pytest.raises(ConfigurationError, match="trio"):
        await store.aexecute(Get(store.entry_names(IDENTITY)))


def test_file_store_refuses_a_directory_it_cannot_use(tmp_path: Path) -> None:
    """A path that is a file, or not a path at all, is a ConfigurationError at construction."""
    occupied = tmp_path / "file"
    occupied.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="cannot keep its database"):
        FileTokenStore(occupied, encryption_key=KEY)
    with pytest.raises(ConfigurationError, match="directory"):
        FileTokenStore(42, encryption_key=KEY)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="directory"):
        FileTokenStore("", encryption_key=KEY)


# -- replies of the wrong shape ------------------------------------------------------------


class ScriptedClient:
    """A client with redis-py's execute_command that gives one fixed reply, or raises."""

    def __init__(self, reply: object) -> None:
        self.reply = reply

    def execute_command(self, *args: str | int) -> object:
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


class AsyncScriptedClient(ScriptedClient):
    async def execute_command(self, *args: str | int) -> object:  # type: ignore[override]
        return super().execute_command(*args)


async def run(store: RedisTokenStore, op: Any, side: str) -> object:
    """The operation through execute() or aexecute()."""
    return store.execute(op) if side == "sync" else await store.aexecute(op)


def every_op(store: RedisTokenStore) -> list[Any]:
    names = store.entry_names(IDENTITY)
    return [
        Get(names),
        Put(names, TOKEN, 1000),
        Lock(names, new_fence(), 1000),
        Unlock(names, new_fence()),
        DeleteIf(names, TOKEN),
    ]


WRONG_FOR_EVERY_OP = [["a", "list"], 1.5, {"a": "dict"}]
WRONG_FOR_ONE = [
    (Get, 7),
    (lambda n: Put(n, TOKEN, 1000), None),
    (lambda n: Lock(n, new_fence(), 1000), b"QUEUED"),
    (lambda n: Unlock(n, new_fence()), True),
    (lambda n: DeleteIf(n, TOKEN), b"1"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("side", ["sync", "async"])
async def test_f5_a_reply_of_the_wrong_shape_is_store_unavailable(
    anyio_backend: str, side: str
) -> None:
    """Replies no Redis command gives (a list for GET, nil for SET, a bool for EVAL...) are
    StoreUnavailable, from the blocking and the asyncio path alike."""

    def store_answering(reply: object) -> RedisTokenStore:
        if side == "sync":
            return RedisTokenStore(ScriptedClient(reply), encryption_key=KEY)
        return RedisTokenStore(async_client=AsyncScriptedClient(reply), encryption_key=KEY)

    cases = [(reply, op) for reply in WRONG_FOR_EVERY_OP for op in every_op(store_answering(0))]
    names = redis_store().entry_names(IDENTITY)
    cases += [(reply, build(names)) for build, reply in WRONG_FOR_ONE]
    for reply, op in cases:
        with pytest.raises(StoreUnavailable, match="wrong shape"):
            await run(store_answering(reply), op, side)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("side", ["sync", "async"])
async def test_f5_any_exception_from_the_client_is_store_unavailable(
    anyio_backend: str, side: str
) -> None:
    """Whatever a client raises (not only redis errors) becomes StoreUnavailable, with the
    client's exception as the cause and none of its text in the message."""
    failure = RuntimeError(f"client broke while holding {TOKEN.access_token}")
    client = ScriptedClient(failure) if side == "sync" else AsyncScriptedClient(failure)
    if side == "sync":
        store = RedisTokenStore(client, encryption_key=KEY)
    else:
        store = RedisTokenStore(async_client=client, encryption_key=KEY)  # type: ignore[arg-type]
    for op in every_op(store):
        with pytest.raises(StoreUnavailable) as caught:
            await run(store, op, side)
        assert caught.value.__cause__ is failure
        assert "RuntimeError" in str(caught.value)
        assert TOKEN.access_token not in str(caught.value)
