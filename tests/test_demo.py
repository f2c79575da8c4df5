"""The demo, end to end: real servers on 127.0.0.1, every step checked by what they counted."""

from __future__ import annotations

import re

import pytest

from httpx_tokenauth import _demo
from httpx_tokenauth._cli import main

#: A whole JWT (three base64url segments): the demo must never print one.
WHOLE_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def test_demo_runs_every_step_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`httpx-tokenauth demo`: five steps with the expected token counts, servers stopped, 0."""
    status = main(["demo"])
    out, err = capsys.readouterr()

    assert status == 0, out + err
    for number, title, expected in [
        (1, "The first request fetches a token", 1),
        (2, "Five more requests reuse it", 0),
        (3, "A short-lived token is renewed before it expires", 2),
        (4, "The API revokes its tokens: a 401, one new token, the request replayed", 1),
        (5, "100 concurrent requests make one token request", 1),
    ]:
        assert f"Step {number}. {title}" in out
        assert f"{number}. ok  {expected} token request(s), expected {expected}: {title}" in out
    assert "response.history: [401]; response.status_code: 200" in out
    assert '401 Unauthorized (WWW-Authenticate: Bearer error="invalid_token")' in out
    assert "no request got a 401" in out
    assert "100 x GET /things -> 100 x 200" in out
    assert "All 5 steps behaved as expected" in out
    assert "5 token requests" in out
    assert out.rstrip().endswith("Both servers stopped.")
    assert "UNEXPECTED" not in out
    assert WHOLE_JWT.search(out) is None
    assert err == ""


def test_demo_exits_1_when_a_step_does_not_behave(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A smoke test: a failing step (an error, or counts off) is reported, not a traceback; 1."""

    def broken(self: object, client: object) -> list[str]:
        raise RuntimeError("the API is down")

    monkeypatch.setattr(_demo._Demo, "reuse", broken)
    monkeypatch.setattr(_demo, "SHORT_SCHEDULE", (0.2, 0.4, 0.6))  # too early to renew

    status = main(["demo"])
    out, err = capsys.readouterr()

    assert status == 1
    assert "UNEXPECTED: RuntimeError: the API is down" in out
    assert "UNEXPECTED: expected 2 token request(s), the server counted 1" in out
    assert "2. UNEXPECTED" in out
    assert "3. UNEXPECTED" in out
    assert "4. ok" in out
    assert "2 of 5 steps did not behave as expected" in out
    assert out.rstrip().endswith("Both servers stopped.")
    assert "Traceback" not in out + err
