"""``httpx-tokenauth demo``: TokenAuth at work against real servers on 127.0.0.1, step by step.

A real OAuth 2.0 authorization server (authlib) and a real bearer-protected API
(Starlette under uvicorn), both over TLS with a throwaway CA, from
``httpx_tokenauth.testing``. Each step prints what was sent, what came back and
how many token requests the authorization server counted, and checks those
counts: the demo doubles as a smoke test (exit status 1 when a step does not
behave as expected).

``httpx_tokenauth.testing`` needs the ``testing`` extra, so it is imported only
when the demo runs.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from ._auth import TokenAuth
from ._challenge import bearer_challenge
from ._cli import PROG, unverified_jwt
from ._providers import ClientCredentials

if TYPE_CHECKING:
    from .testing import LocalAPI, LocalAuthorizationServer

__all__ = ["run"]

CLIENT_ID = "demo-service"
SCOPE = "things:read"
#: Step 3: tokens this short-lived are renewed after half their lifetime (2 s).
SHORT_LIFETIME = 4
#: Step 3: when each request goes out, in seconds after the first one came back.
SHORT_SCHEDULE = (1.0, 2.5, 3.5)
CONCURRENT = 100


def run(out: TextIO | None = None) -> int:
    """Run the demo, printing to ``out`` (stdout); return the exit status."""
    out = sys.stdout if out is None else out
    try:
        from .testing import LocalAPI, LocalAuthorizationServer, LocalCA  # noqa: PLC0415
    except ImportError:
        sys.stderr.write(
            f"{PROG}: error: the demo needs the servers of the 'testing' extra: "
            "pip install 'httpx-tokenauth[testing]' (or run ./scripts/demo in a clone)\n"
        )
        return 2
    started = time.monotonic()
    ca = LocalCA()
    secret = secrets.token_urlsafe(32)
    with LocalAuthorizationServer(ca) as server, LocalAPI(server, ca=ca) as api:
        server.register_client(CLIENT_ID, secret=secret, scope=SCOPE)
        demo = _Demo(
            out, server=server, api=api, trust=ca.client_context(), secret=secret, started=started
        )
        ok = demo.run()
    demo.say("\nBoth servers stopped.")
    return 0 if ok else 1


@dataclass
class _Step:
    title: str
    expected: int
    counted: int = 0
    problems: tuple[str, ...] = ()


class _Demo:
    def __init__(
        self,
        out: TextIO,
        *,
        server: LocalAuthorizationServer,
        api: LocalAPI,
        trust: Any,
        secret: str,
        started: float,
    ) -> None:
        self.out = out
        self.server = server
        self.api = api
        self.trust = trust
        self.secret = secret
        self.started = started
        self.color = _isatty(out) and not os.environ.get("NO_COLOR")
        self.steps: list[_Step] = []
        self.shown_token_requests = 0

    # -- output ------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def at(self) -> str:
        return f"{time.monotonic() - self.started:6.2f}s"

    def token_name(self, token: str | None) -> str:
        if token is None:
            return "no token"
        issued = self.server.issued_tokens()
        number = f"token #{issued.index(token) + 1}" if token in issued else "unknown token"
        return f"Bearer {token[:8]}... ({number})"

    def show_token_requests(self) -> None:
        """Print the token requests the authorization server served since the last call."""
        records = self.server.token_requests
        for record in records[self.shown_token_requests :]:
            outcome = f"{record.status_code}"
            if record.error:
                outcome += f" {record.error}"
            if record.access_token:
                issued = self.server.issued_tokens()
                outcome += f", token #{issued.index(record.access_token) + 1}"
                decoded = unverified_jwt(record.access_token)
                if decoded is not None:
                    claims = decoded[1]
                    outcome += f", expires in {round(claims['exp'] - claims['iat'])} s"
            self.say(
                f"  {self.at()}  token  POST /token ({record.grant_type}, "
                f"{record.auth_method}) -> {outcome}"
            )
        self.shown_token_requests = len(records)

    def on_request(self, request: httpx.Request) -> None:
        self.show_token_requests()  # the fetch, if any, came just before this request

    def on_response(self, response: httpx.Response) -> None:
        request = response.request
        token = request.headers.get("authorization", "").removeprefix("Bearer ") or None
        status = f"{response.status_code} {response.reason_phrase}"
        if response.status_code == 401:
            challenge = bearer_challenge(response)
            if challenge is not None and challenge.error:
                status += f' (WWW-Authenticate: Bearer error="{challenge.error}")'
        self.say(
            f"  {self.at()}  API    {request.method} {request.url.path}  "
            f"Authorization: {self.token_name(token)} -> {status}"
        )

    def client(self, auth: TokenAuth) -> httpx.Client:
        return httpx.Client(
            auth=auth,
            verify=self.trust,
            base_url=self.api.url,
            event_hooks={"request": [self.on_request], "response": [self.on_response]},
        )

    def provider(self) -> ClientCredentials:
        return ClientCredentials(
            self.server.token_url, client_id=CLIENT_ID, client_secret=self.secret, scope=SCOPE
        )

    # -- the steps ---------------------------------------------------------------------

    def run(self) -> bool:
        self.intro()
        with httpx.Client(verify=self.trust) as token_client:
            auth = TokenAuth(self.provider(), token_client=token_client)
            with self.client(auth) as client:
                self.step(1, "The first request fetches a token", 1, lambda: self.first(client))
                self.step(2, "Five more requests reuse it", 0, lambda: self.reuse(client))
                self.step(
                    3,
                    "A short-lived token is renewed before it expires",
                    2,
                    lambda: self.renewal(token_client),
                )
                self.step(
                    4,
                    "The API revokes its tokens: a 401, one new token, the request replayed",
                    1,
                    lambda: self.revocation(client),
                )
        self.step(
            5,
            f"{CONCURRENT} concurrent requests make one token request",
            1,
            self.concurrent,
        )
        return self.summary()

    def intro(self) -> None:
        self.say(self.style(f"{PROG} demo", "1"))
        self.say(
            "An OAuth 2.0 authorization server (authlib) and an API (Starlette), both on "
            "https://127.0.0.1\nwith a throwaway CA; the API accepts only the server's tokens.\n"
        )
        self.say(f"  authorization server  {self.server.token_url}")
        self.say(f"  API                   {self.api.url}")
        self.say(
            "\n  auth = TokenAuth(ClientCredentials(token_url, "
            f'client_id="{CLIENT_ID}", client_secret=...,\n'
            f'                                     scope="{SCOPE}"))\n'
            "  client = httpx.Client(auth=auth, base_url=api_url)"
        )

    def step(self, number: int, title: str, expected: int, body: Callable[[], list[str]]) -> None:
        self.say("\n" + self.style(f"Step {number}. {title}", "1"))
        before = self.server.token_request_count
        try:
            problems = body()
        except Exception as exc:  # a smoke test reports, then goes on to the next step
            problems = [f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"]
        self.show_token_requests()
        counted = self.server.token_request_count - before
        if counted != expected:
            problems = [
                *problems,
                f"expected {expected} token request(s), the server counted {counted}",
            ]
        mark = self.style("ok", "32") if not problems else self.style("UNEXPECTED", "31")
        self.say(
            f"  token requests in this step: {counted} (expected {expected}); "
            f"server total: {self.server.token_request_count}  {mark}"
        )
        for problem in problems:
            self.say(f"  {self.style('UNEXPECTED', '31')}: {problem}")
        self.steps.append(_Step(title, expected, counted, tuple(problems)))

    def first(self, client: httpx.Client) -> list[str]:
        response = client.get("/things")
        return [] if response.status_code == 200 else [f"got {response.status_code}, not 200"]

    def reuse(self, client: httpx.Client) -> list[str]:
        first = len(self.api.requests)
        for _ in range(5):
            client.get("/things")
        seen = self.api.requests[first:]
        tokens = {r.token for r in seen}
        problems = []
        if [r.status_code for r in seen] != [200] * 5:
            problems.append(f"statuses {[r.status_code for r in seen]}, not five 200s")
        if len(tokens) != 1:
            problems.append(f"{len(tokens)} different tokens used, not one")
        return problems

    def renewal(self, token_client: httpx.Client) -> list[str]:
        self.server.token_lifetime = SHORT_LIFETIME
        self.say(
            f"  The server now issues {SHORT_LIFETIME}-second tokens. TokenAuth renews a token "
            "`leeway` (60 s) before it\n  expires, clamped to half its lifetime: "
            f"{SHORT_LIFETIME / 2:g} s here. A new TokenAuth sends a request about every second."
        )
        first = len(self.api.requests)
        issued_before = len(self.server.issued_tokens())
        try:
            auth = TokenAuth(self.provider(), token_client=token_client)
            with self.client(auth) as client:
                client.get("/things")
                t0 = time.monotonic()
                for offset in SHORT_SCHEDULE:
                    time.sleep(max(0.0, t0 + offset - time.monotonic()))
                    client.get("/things")
        finally:
            self.server.token_lifetime = 3600
        seen = self.api.requests[first:]
        problems = []
        if any(r.status_code != 200 for r in seen):
            problems.append(f"statuses {[r.status_code for r in seen]}: a request was refused")
        new = self.server.issued_tokens()[issued_before:]
        used = [r.token for r in seen]
        if len(new) == 2 and used == [new[0], new[0], new[1], new[1]]:
            old, renewed = (unverified_jwt(t) for t in new)
            if old is not None and renewed is not None:
                margin = old[1]["exp"] - renewed[1]["iat"]
                self.show_token_requests()
                number = self.server.issued_tokens().index(new[0]) + 1
                self.say(
                    f"  The third request found token #{number} in its renewal window and "
                    f"fetched its successor\n  {margin:.1f} s before it would have expired; "
                    "no request got a 401."
                )
                if margin <= 0:
                    problems.append("the token was renewed only after it expired")
        else:
            problems.append(
                "expected the first two requests on one token, the last two on its successor"
            )
        return problems

    def revocation(self, client: httpx.Client) -> list[str]:
        self.api.revoke_all_issued_before()
        self.say("  api.revoke_all_issued_before(): the API now rejects every token issued so far.")
        response = client.get("/things")
        history = [r.status_code for r in response.history]
        self.say(f"  response.history: {history}; response.status_code: {response.status_code}")
        if history != [401] or response.status_code != 200:
            return [f"expected history [401] and 200, got {history} and {response.status_code}"]
        return []

    def concurrent(self) -> list[str]:
        self.say(
            f"  A new TokenAuth (no token yet) and one httpx.AsyncClient; asyncio.gather of "
            f"{CONCURRENT} GET /things."
        )
        first = len(self.api.requests)
        statuses = asyncio.run(self._gather())
        self.show_token_requests()
        seen = self.api.requests[first:]
        tokens = {r.token for r in seen}
        codes = sorted(set(statuses))
        summary = ", ".join(f"{statuses.count(c)} x {c}" for c in codes)
        names = ", ".join(sorted(self.token_name(t) for t in tokens))
        self.say(
            f"  {self.at()}  API    {len(seen)} x GET /things -> {summary}; all carried {names}"
        )
        problems = []
        if statuses != [200] * CONCURRENT:
            problems.append(f"statuses {summary}, not {CONCURRENT} x 200")
        if len(tokens) != 1:
            problems.append(f"{len(tokens)} different tokens used, not one")
        return problems

    async def _gather(self) -> list[int]:
        async with httpx.AsyncClient(verify=self.trust) as token_client:
            auth = TokenAuth(self.provider(), async_token_client=token_client)
            limits = httpx.Limits(max_connections=CONCURRENT)
            async with httpx.AsyncClient(
                auth=auth, verify=self.trust, base_url=self.api.url, limits=limits
            ) as client:
                responses = await asyncio.gather(
                    *(client.get("/things") for _ in range(CONCURRENT))
                )
        return [r.status_code for r in responses]

    def summary(self) -> bool:
        self.say("\n" + self.style("Summary", "1"))
        for number, step in enumerate(self.steps, 1):
            mark = self.style("ok", "32") if not step.problems else self.style("UNEXPECTED", "31")
            self.say(
                f"  {number}. {mark}  {step.counted} token request(s), expected "
                f"{step.expected}: {step.title}"
            )
        failed = [s for s in self.steps if s.problems]
        elapsed = time.monotonic() - self.started
        total = self.server.token_request_count
        if failed:
            self.say(
                self.style(
                    f"\n{len(failed)} of {len(self.steps)} steps did not behave as expected "
                    f"({elapsed:.1f} s).",
                    "31",
                )
            )
            return False
        self.say(
            f"\nAll {len(self.steps)} steps behaved as expected: {len(self.api.requests)} API "
            f"requests, {total} token requests, {elapsed:.1f} s."
        )
        return True


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
