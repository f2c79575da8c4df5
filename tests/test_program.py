"""The acquisition program, stepped by hand: scripted results in, effects out.

No network, no sleeps, no threads: every rule of getting a token (retries,
deadline, early renewal, cool-down, single flight) is observed as the effects
the program yields and what it returns or raises.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from httpx_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    FileTokenStore,
    ProviderError,
    RetryPolicy,
    Token,
    TokenAuth,
    TokenTransportError,
    UnexpectedTokenResponseError,
    generate_encryption_key,
)
from httpx_tokenauth._program import (
    WAIT_MARGIN,
    CallProvider,
    Detach,
    Effect,
    Flight,
    Program,
    Send,
    Sleep,
    StoreCall,
    Wait,
)
from httpx_tokenauth._store import StoreUnavailable
from httpx_tokenauth._token import RawResponse
from httpx_tokenauth._transport import DeadlineExceededError

NOW = 1_700_000_000.0


class Times:
    """The wall clock and the monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 1000.0

    def clock(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def ok(token: str = "t1", expires_in: float = 3600) -> RawResponse:  # noqa: S107
    body = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
    return RawResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())


def unavailable() -> RawResponse:
    return RawResponse(503, {"content-type": "text/plain"}, b"down")


def make(
    times: Times, *, retry: RetryPolicy | None = None, provider: Any = None, **kwargs: Any
) -> TokenAuth:
    provider = provider or ClientCredentials(
        "https://as.example/token", client_id="c", client_secret="s" * 16
    )
    auth = TokenAuth(provider, clock=times.clock, retry=retry, **kwargs)
    auth._acquisition.monotonic = times.monotonic
    return auth


Responder = Callable[[Effect[Any]], object]


def step(program: Program[Any], respond: Responder) -> tuple[list[Effect[Any]], object]:
    """Run ``program``, answering each effect with ``respond`` (which may raise).

    A Detach is stepped in place, as the sync interpreter runs it. Returns the
    effects seen (Detach left out) and the program's result, or the exception
    it raised.
    """
    effects: list[Effect[Any]] = []

    def run(program: Program[Any]) -> object:
        value: object = None
        error: BaseException | None = None
        while True:
            try:
                effect = program.send(value) if error is None else program.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if isinstance(effect, Detach):
                    value = run(effect.program)
                else:
                    effects.append(effect)
                    value = respond(effect)
            except Exception as exc:
                error = exc

    try:
        return effects, run(program)
    except Exception as exc:
        return effects, exc


def script(*answers: object) -> Responder:
    """Answer Send effects in order (an exception is raised); Sleep gets None."""
    queue = list(answers)

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, Send):
            answer = queue.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        if isinstance(effect, Sleep):
            return None
        raise AssertionError(f"unexpected effect {effect!r}")

    return respond


def kinds(effects: list[Effect[Any]]) -> list[str]:
    return [type(e).__name__ for e in effects]


def test_cold_start_is_one_send_and_returns_the_token() -> None:
    """No token yet: the program sends one token request and returns what it got."""
    times = Times()
    auth = make(times)
    effects, result = step(auth._acquisition.acquire(blocking=True), script(ok("t1")))
    assert kinds(effects) == ["Send"]
    assert isinstance(result, Token)
    assert result.access_token == "t1"
    assert auth._cache.fresh(times.wall) is result


def test_503_503_200_yields_send_sleep_send_sleep_send_with_the_policy_delays() -> None:
    """Two passing failures are retried after the policy's (jittered) backoff delays."""
    times = Times()
    policy = RetryPolicy(attempts=3, backoff=0.5, max_backoff=8, random=lambda: 0.5)
    auth = make(times, retry=policy)
    effects, result = step(
        auth._acquisition.acquire(blocking=False), script(unavailable(), unavailable(), ok())
    )
    assert kinds(effects) == ["Send", "Sleep", "Send", "Sleep", "Send"]
    sleeps = [e.seconds for e in effects if isinstance(e, Sleep)]
    assert sleeps == [0.25, 0.5]  # half of 0.5 s, then half of 1 s
    assert isinstance(result, Token)


def test_every_send_carries_the_deadline_of_the_acquisition() -> None:
    """All attempts of one acquisition share one deadline: its start plus policy.deadline."""
    times = Times()
    auth = make(times, retry=RetryPolicy(attempts=3, backoff=0.001, deadline=7.0))
    effects, _ = step(auth._acquisition.acquire(blocking=True), script(unavailable(), ok()))
    deadlines = {e.deadline_at for e in effects if isinstance(e, Send)}
    assert deadlines == {times.mono + 7.0}


def test_attempts_exhausted_raise_the_last_error() -> None:
    """After the policy's attempts, the last failure reaches the caller as its typed error."""
    times = Times()
    auth = make(times, retry=RetryPolicy(attempts=2, backoff=0.001))
    effects, result = step(
        auth._acquisition.acquire(blocking=True), script(unavailable(), unavailable())
    )
    assert kinds(effects) == ["Send", "Sleep", "Send"]
    assert isinstance(result, UnexpectedTokenResponseError)
    assert result.status_code == 503


def test_deadline_reached_mid_attempt_is_a_typed_error_naming_the_deadline() -> None:
    """An attempt the deadline ended is a TokenTransportError that says so; no retry follows."""
    times = Times()
    auth = make(times, retry=RetryPolicy(attempts=3, deadline=1.5))
    ended = DeadlineExceededError("ended", token_url="https://as.example/token")
    effects, result = step(auth._acquisition.acquire(blocking=True), script(ended))
    assert kinds(effects) == ["Send"]
    assert isinstance(result, TokenTransportError)
    assert "retry deadline (1.5 s)" in str(result)


def test_no_attempt_starts_past_the_deadline() -> None:
    """A retry whose sleep reached the deadline sends nothing more."""
    times = Times()
    auth = make(times, retry=RetryPolicy(attempts=5, backoff=1.0, deadline=2.0, random=lambda: 0.9))

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, Sleep):
            times.advance(effect.seconds + 1.5)  # the pause ran long
            return None
        return unavailable()

    effects, result = step(auth._acquisition.acquire(blocking=True), respond)
    assert kinds(effects) == ["Send", "Sleep"]
    assert isinstance(result, TokenTransportError)
    assert "retry deadline" in str(result)


def test_failed_early_renewal_keeps_the_token_and_yields_one_send_only() -> None:
    """In the renewal window a failed attempt is not retried and the valid token is returned."""
    times = Times()
    auth = make(times, retry=RetryPolicy(attempts=3, backoff=0.001))
    _, first = step(auth._acquisition.acquire(blocking=True), script(ok("t1")))
    times.advance(3600 - 30)  # inside the 60 s window
    effects, result = step(auth._acquisition.acquire(blocking=True), script(unavailable()))
    assert kinds(effects) == ["Send"]
    assert result is first


def test_early_renewal_attempt_keeps_the_users_deadline() -> None:
    """The one renewal attempt is bounded by the configured deadline, not a default one."""
    times = Times()
    auth = make(times, retry=RetryPolicy(deadline=1.5))
    step(auth._acquisition.acquire(blocking=True), script(ok("t1")))
    times.advance(3600 - 30)
    effects, _ = step(auth._acquisition.acquire(blocking=True), script(ok("t2")))
    (send,) = effects
    assert isinstance(send, Send)
    assert send.deadline_at == times.mono + 1.5


def test_cool_down_answers_from_memory_without_a_send() -> None:
    """Within the cool-down after a failed fetch, the program raises at once, sending nothing."""
    times = Times()
    auth = make(times, cooldown=5.0)
    _, first = step(auth._acquisition.acquire(blocking=True), script(unavailable()))
    assert isinstance(first, UnexpectedTokenResponseError)
    effects, again = step(auth._acquisition.acquire(blocking=True), script())
    assert effects == []
    assert isinstance(again, UnexpectedTokenResponseError)
    assert again is not first  # a copy per caller


@pytest.mark.parametrize("step_back", [3600.0, 86400.0 * 365])
def test_cool_down_ends_on_the_monotonic_clock_when_the_wall_clock_steps_back(
    step_back: float,
) -> None:
    """A wall clock stepped back does not stretch the cool-down: monotonic time ends it."""
    times = Times()
    auth = make(times, cooldown=5.0)
    step(auth._acquisition.acquire(blocking=True), script(unavailable()))
    times.wall -= step_back
    times.mono += 5.0
    effects, result = step(auth._acquisition.acquire(blocking=True), script(ok("t2")))
    assert kinds(effects) == ["Send"]
    assert isinstance(result, Token)


def test_renewal_retry_pause_ends_on_the_monotonic_clock() -> None:
    """After a failed early renewal, a wall clock stepped back does not delay the next attempt."""
    times = Times()
    auth = make(times)
    step(auth._acquisition.acquire(blocking=True), script(ok("t1")))
    times.advance(3600 - 50)
    step(auth._acquisition.acquire(blocking=True), script(unavailable()))  # pause: 5 s
    times.wall -= 0.5  # stepped back, still in the window
    times.mono += 5.0
    effects, result = step(auth._acquisition.acquire(blocking=True), script(ok("t2")))
    assert kinds(effects) == ["Send"]
    assert isinstance(result, Token)
    assert result.access_token == "t2"


def test_a_waiter_waits_for_the_flight_bounded_by_the_deadline_plus_a_margin() -> None:
    """With a fetch in flight, a caller yields Wait(until=start + deadline + margin)."""
    times = Times()
    auth = make(times, retry=RetryPolicy(deadline=3.0))
    acq = auth._acquisition
    flight = Flight(times.mono)
    acq.flight = flight
    waiter = acq.acquire(blocking=False)
    effect = next(waiter)
    assert isinstance(effect, Wait)
    assert effect.flight is flight
    assert effect.until == times.mono + 3.0 + WAIT_MARGIN


def test_a_waiter_is_handed_the_flights_token_even_if_it_has_expired_by_then() -> None:
    """The token fetched for waiters is theirs, even if their clock says it already expired."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    flight = Flight(times.mono)
    acq.flight = flight
    waiter = acq.acquire(blocking=False)
    assert isinstance(next(waiter), Wait)
    token = Token("short", expires_at=times.wall + 1e-6, received_at=times.wall)
    flight.token = acq.cache.store(token, times.wall)
    acq._land(flight)
    times.advance(5.0)  # past even the lifetime floor
    with pytest.raises(StopIteration) as done:
        waiter.send(True)
    assert done.value.value is token


def test_a_waiter_whose_flight_never_lands_takes_over_and_fetches() -> None:
    """A flight that did not land within the bound is abandoned: the waiter fetches itself."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    stranded = Flight(times.mono)
    acq.flight = stranded

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, Wait):
            return False  # the bound passed and the flight never landed
        return ok("t2")

    effects, result = step(acq.acquire(blocking=False), respond)
    assert kinds(effects) == ["Wait", "Send"]
    assert isinstance(result, Token)
    assert result.access_token == "t2"
    assert acq.flight is None  # neither the stranded flight nor ours remains


def test_a_blocking_caller_on_the_owners_thread_fetches_instead_of_waiting() -> None:
    """A blocking call on the thread whose event loop owns the flight would deadlock: it fetches."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    acq.flight = Flight(times.mono)  # owned by this thread
    effects, result = step(acq.acquire(blocking=True), script(ok("t9")))
    assert kinds(effects) == ["Send"]
    assert isinstance(result, Token)


def test_a_blocking_caller_on_another_thread_waits() -> None:
    """A flight owned by another thread is waited for, not duplicated."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    elsewhere: list[Flight] = []
    thread = threading.Thread(target=lambda: elsewhere.append(Flight(times.mono)))
    thread.start()
    thread.join()
    acq.flight = elsewhere[0]
    assert isinstance(next(acq.acquire(blocking=True)), Wait)


def test_in_the_renewal_window_a_caller_does_not_wait_for_the_renewer() -> None:
    """While someone renews early, other callers get the still-valid token without waiting."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    _, first = step(acq.acquire(blocking=True), script(ok("t1")))
    times.advance(3600 - 30)
    acq.flight = Flight(times.mono)
    effects, result = step(acq.acquire(blocking=False), script())
    assert effects == []
    assert result is first


class SyncProvider:
    def __init__(self, result: object) -> None:
        self.result = result

    def fetch_token(self) -> Any:
        return self.result


def test_a_provider_is_called_through_one_effect() -> None:
    """A user provider is one CallProvider effect; its Token is returned."""
    times = Times()
    token = Token("p1")
    auth = make(times, provider=SyncProvider(token))
    effects, result = step(
        auth._acquisition.acquire(blocking=False),
        lambda e: e.fetch() if isinstance(e, CallProvider) else None,
    )
    assert kinds(effects) == ["CallProvider"]
    assert isinstance(effects[0], CallProvider)
    assert effects[0].is_async is False  # a sync-only provider, called from async code
    assert result is token


def test_a_provider_that_raises_is_a_provider_error_with_the_cause() -> None:
    """An exception from the provider comes back as ProviderError, the original as __cause__."""
    times = Times()
    auth = make(times, provider=SyncProvider(None))

    def respond(effect: Effect[Any]) -> object:
        raise KeyError("vault down")

    _, result = step(auth._acquisition.acquire(blocking=True), respond)
    assert isinstance(result, ProviderError)
    assert isinstance(result.__cause__, KeyError)


def test_a_provider_that_returns_a_non_token_is_a_provider_error() -> None:
    """A provider must return a Token; anything else is a typed error naming what came back."""
    times = Times()
    auth = make(times, provider=SyncProvider("a string"))
    _, result = step(
        auth._acquisition.acquire(blocking=True),
        lambda e: e.fetch() if isinstance(e, CallProvider) else None,
    )
    assert isinstance(result, ProviderError)
    assert "returned str, not a Token" in str(result)


@pytest.mark.parametrize("bad", [None, "now", float("nan"), True])
def test_a_clock_that_breaks_at_request_time_is_a_configuration_error(bad: object) -> None:
    """A clock that returns a non-number when a token is needed gives a typed error."""
    times = Times()
    auth = make(times)
    auth._acquisition.clock = lambda: bad  # type: ignore[assignment,return-value]
    effects, result = step(auth._acquisition.acquire(blocking=True), script())
    assert effects == []
    assert isinstance(result, ConfigurationError)
    assert "clock" in str(result)


def test_a_failed_flight_lands_and_the_next_caller_can_board() -> None:
    """Whatever the outcome, the owner lands its flight: no flight is left behind."""
    times = Times()
    auth = make(times, cooldown=0.0)
    step(auth._acquisition.acquire(blocking=True), script(unavailable()))
    assert auth._acquisition.flight is None
    effects, result = step(auth._acquisition.acquire(blocking=True), script(ok()))
    assert kinds(effects) == ["Send"]
    assert isinstance(result, Token)


# -- the shared store (SPEC F2-F5): one fetch for the fleet ----------------------------------


@pytest.fixture
def fleet(tmp_path: Any) -> Callable[..., TokenAuth]:
    """TokenAuth with a shared store whose operations the test answers by hand."""
    store = FileTokenStore(tmp_path, encryption_key=generate_encryption_key())

    def build(times: Times, **kwargs: Any) -> TokenAuth:
        return make(times, store=store, **kwargs)

    return build


def store_script(*answers: object) -> Responder:
    """Answer effects in order: a StoreCall with the next answer for its operation type."""
    queue = list(answers)

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, Sleep):
            return None
        op_or_send, answer = queue.pop(0)
        kind = type(effect.op).__name__ if isinstance(effect, StoreCall) else type(effect).__name__
        assert kind == op_or_send, f"expected {op_or_send}, got {kind}"
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return respond


def ops(effects: list[Effect[Any]]) -> list[str]:
    return [type(e.op).__name__ if isinstance(e, StoreCall) else type(e).__name__ for e in effects]


def shared_token(times: Times, value: str = "fleet-1", lifetime: float = 3600) -> Token:
    return Token(value, expires_at=times.wall + lifetime, received_at=times.wall)


def test_f6_a_usable_shared_token_is_adopted_without_a_token_request(fleet: Any) -> None:
    """Another process's token in the store is used: one Get, no lease, no Send."""
    times = Times()
    auth = fleet(times)
    token = shared_token(times)
    effects, result = step(auth._acquisition.acquire(blocking=True), store_script(("Get", token)))
    assert ops(effects) == ["Get"]
    assert result is token
    assert auth._cache.fresh(times.wall) is token


def test_f2_a_miss_takes_the_lease_fetches_shares_and_releases(fleet: Any) -> None:
    """Nothing shared: lease, look once more, fetch, Put with the token's lifetime, Unlock."""
    times = Times()
    auth = fleet(times)
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        store_script(
            ("Get", None), ("Lock", True), ("Get", None), ("Send", ok("t1", 600)),
            ("Put", None), ("Unlock", True),
        ),
    )  # fmt: skip
    assert ops(effects) == ["Get", "Lock", "Get", "Send", "Put", "Unlock"]
    put = effects[4]
    assert isinstance(put, StoreCall)
    assert put.op.ttl_ms == 600_000
    assert isinstance(result, Token)
    assert result.access_token == "t1"


def test_f2_a_held_lease_is_waited_for_by_polling_with_backoff(fleet: Any) -> None:
    """Someone else fetching: sleep, look, sleep longer, look; adopt what they shared."""
    times = Times()
    auth = fleet(times)
    theirs = shared_token(times)
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        store_script(
            ("Get", None), ("Lock", False), ("Get", None), ("Lock", False), ("Get", theirs),
        ),
    )  # fmt: skip
    assert ops(effects) == ["Get", "Lock", "Sleep", "Get", "Lock", "Sleep", "Get"]
    pauses = [e.seconds for e in effects if isinstance(e, Sleep)]
    assert pauses[1] == 2 * pauses[0]
    assert result is theirs


def test_f2_a_waiter_past_the_lease_fetches_for_itself(fleet: Any) -> None:
    """A lease held past its bound (a stuck holder): the waiter stops waiting and fetches."""
    times = Times()
    auth = fleet(times, retry=RetryPolicy(deadline=1.0))
    answers = store_script(
        ("Get", None), ("Lock", False), ("Get", None), ("Lock", False), ("Send", ok("mine"))
    )

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, Sleep):
            times.advance(5.0)  # longer than the 2 s lease
            return None
        return answers(effect)

    effects, result = step(auth._acquisition.acquire(blocking=True), respond)
    assert ops(effects) == ["Get", "Lock", "Sleep", "Get", "Lock", "Send"]
    assert isinstance(result, Token)
    assert result.access_token == "mine"


def test_f3_a_rejected_token_is_compare_deleted_and_not_adopted(fleet: Any) -> None:
    """After a 401 for token T, a shared T is deleted only if it is still T, never reused."""
    times = Times()
    auth = fleet(times)
    acq = auth._acquisition
    rejected = shared_token(times, "old")
    acq.cache.store(rejected, times.wall)
    acq.invalidate(rejected)
    effects, result = step(
        acq.acquire(blocking=True),
        store_script(
            ("Get", rejected), ("DeleteIf", True), ("Lock", True), ("Get", None),
            ("Send", ok("new")), ("Put", None), ("Unlock", True),
        ),
    )  # fmt: skip
    assert ops(effects) == ["Get", "DeleteIf", "Lock", "Get", "Send", "Put", "Unlock"]
    delete = effects[1]
    assert isinstance(delete, StoreCall)
    assert delete.op.token is rejected
    assert isinstance(result, Token)
    assert result.access_token == "new"


def test_f3_a_401_for_an_old_token_adopts_the_current_shared_one(fleet: Any) -> None:
    """A process whose 401 was for a token already replaced in the store adopts the new one."""
    times = Times()
    auth = fleet(times)
    acq = auth._acquisition
    old = shared_token(times, "old")
    acq.cache.store(old, times.wall)
    acq.invalidate(old)
    new = shared_token(times, "new")
    effects, result = step(acq.acquire(blocking=True), store_script(("Get", new)))
    assert ops(effects) == ["Get"]
    assert result is new


def test_f5_a_store_failure_is_a_miss_and_the_fetch_happens_in_process(
    fleet: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that fails is carried on without: the token is fetched, one warning per outage."""
    times = Times()
    auth = fleet(times, cooldown=0.0)
    down = StoreUnavailable("store down")
    with caplog.at_level("WARNING", logger="httpx_tokenauth"):
        effects, result = step(
            auth._acquisition.acquire(blocking=True),
            store_script(("Get", down), ("Send", ok("t1"))),
        )
        assert ops(effects) == ["Get", "Send"]  # a failed read: no lease attempt either
        assert isinstance(result, Token)
        auth._acquisition.invalidate(result)
        step(
            auth._acquisition.acquire(blocking=True),
            store_script(("Get", down), ("Send", ok("t2"))),
        )
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "store_failed"]
    assert len(warnings) == 1


def test_f5_a_failed_fetch_releases_the_lease_and_stores_nothing(fleet: Any) -> None:
    """The lease holder's failed fetch unlocks and puts no entry: failures are never stored."""
    times = Times()
    auth = fleet(times, retry=RetryPolicy.off())
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        store_script(
            ("Get", None), ("Lock", True), ("Get", None), ("Send", unavailable()),
            ("Unlock", True),
        ),
    )  # fmt: skip
    assert ops(effects) == ["Get", "Lock", "Get", "Send", "Unlock"]
    assert isinstance(result, UnexpectedTokenResponseError)


def test_f2_early_renewal_with_the_lease_taken_keeps_the_token_and_sends_nothing(
    fleet: Any,
) -> None:
    """In the renewal window, another process renewing: keep ours, look again later."""
    times = Times()
    auth = fleet(times)
    acq = auth._acquisition
    ours = acq.cache.store(shared_token(times, "ours"), times.wall)
    times.advance(3600 - 30)
    effects, result = step(acq.acquire(blocking=True), store_script(("Get", ours), ("Lock", False)))
    assert ops(effects) == ["Get", "Lock"]
    assert result is ours
    again, result = step(acq.acquire(blocking=True), store_script())
    assert again == []  # deferred: no store traffic on every request in the window
    assert result is ours


def test_f2_early_renewal_adopts_a_newer_shared_token(fleet: Any) -> None:
    """In the renewal window, a newer token in the store is adopted instead of renewing."""
    times = Times()
    auth = fleet(times)
    acq = auth._acquisition
    acq.cache.store(shared_token(times, "ours"), times.wall)
    times.advance(3600 - 30)
    newer = shared_token(times, "newer")
    effects, result = step(acq.acquire(blocking=True), store_script(("Get", newer)))
    assert ops(effects) == ["Get"]
    assert result is newer


def test_f3_the_lease_holder_never_adopts_the_rejected_token(fleet: Any) -> None:
    """After a 401, a compare-and-delete that did not get through must not let the lease
    holder's second read hand back the very token that was rejected."""
    times = Times()
    auth = fleet(times)
    acq = auth._acquisition
    rejected = acq.cache.store(shared_token(times, "old"), times.wall)
    acq.invalidate(rejected)
    effects, result = step(
        acq.acquire(blocking=True),
        store_script(
            ("Get", rejected), ("DeleteIf", StoreUnavailable("blip")), ("Lock", True),
            ("Get", rejected), ("Send", ok("new")), ("Put", None), ("Unlock", True),
        ),
    )  # fmt: skip
    assert ops(effects) == ["Get", "DeleteIf", "Lock", "Get", "Send", "Put", "Unlock"]
    assert isinstance(result, Token)
    assert result.access_token == "new"


def test_f2_a_cancelled_lease_holder_hands_the_lease_back(fleet: Any) -> None:
    """A holder whose fetch is cancelled or interrupted (anything but a TokenError thrown in)
    releases the lease, shielded from the cancellation, instead of making the fleet wait it
    out; then the exception goes on to the caller."""
    times = Times()
    auth = fleet(times)

    class CancelledError(Exception):  # stands for a cancellation thrown in by an interpreter
        pass

    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        store_script(
            ("Get", None), ("Lock", True), ("Get", None), ("Send", CancelledError()),
            ("Unlock", True),
        ),
    )  # fmt: skip
    assert ops(effects) == ["Get", "Lock", "Get", "Send", "Unlock"]
    unlock = effects[-1]
    assert isinstance(unlock, StoreCall)
    assert unlock.shielded is True
    assert isinstance(result, CancelledError)
    assert auth._acquisition.flight is None  # and the in-process flight landed


def test_f6_a_shared_token_past_the_default_lifetime_is_not_adopted(fleet: Any) -> None:
    """A token without expires_in counts as expired after default_lifetime in the shared
    store too: it is not adopted for ever after."""
    times = Times()
    auth = fleet(times, default_lifetime=60.0)
    old = Token("no-expiry", received_at=times.wall)
    times.advance(120)
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        store_script(
            ("Get", old), ("Lock", True), ("Get", old), ("Send", ok("fresh")),
            ("Put", None), ("Unlock", True),
        ),
    )  # fmt: skip
    assert ops(effects) == ["Get", "Lock", "Get", "Send", "Put", "Unlock"]
    assert isinstance(result, Token)
    assert result.access_token == "fresh"
