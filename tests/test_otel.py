"""OpenTelemetry metrics and spans (SPEC O3), with the real SDK and its in-memory exporters.

Each TokenAuth here gets its own MeterProvider and TracerProvider
(``meter_provider=`` / ``tracer_provider=``), so nothing global is set. What
the exporters received is checked: the instruments and their attributes, one
span per token request, and that no secret is in any attribute.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from httpx_tokenauth import ClientCredentials, ConfigurationError, TokenAuth

from conftest import CLIENT_ID, CLIENT_SECRET, TOKEN_URL, Env, token_json

pytestmark = pytest.mark.anyio


class Otel:
    """A meter provider and a tracer provider that keep what they export in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self) -> dict[str, list[Any]]:
        """Every data point exported, by instrument name."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "httpx_tokenauth"
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def counts(self, name: str, *keys: str) -> dict[tuple[Any, ...], int]:
        """A counter's values by the given attributes."""
        return {
            tuple(p.attributes.get(k) for k in keys): p.value for p in self.points().get(name, [])
        }

    def close(self) -> None:
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.close()


async def test_o3_token_requests_retries_and_replays_become_metrics_and_spans(
    env: Env, otel: Otel
) -> None:
    """A 503, a token, a 401, a new token: counters, histogram, replays, and three spans."""

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(503, text="busy", headers={"Retry-After": "0"})
        return httpx.Response(
            200, json=token_json(f"t{n}"), headers={"X-RateLimit-Remaining": str(10 - n)}
        )

    env.auth_server.reply = reply
    env.api.accept = lambda token: token != "t2"
    env.make(meter_provider=otel.meter_provider, tracer_provider=otel.tracer_provider)
    assert (await env.request()).status_code == 200

    requests = otel.counts(
        "httpx_tokenauth.token.requests",
        "httpx_tokenauth.reason",
        "httpx_tokenauth.outcome",
        "server.address",
        "httpx_tokenauth.grant",
    )
    assert requests == {
        ("cold", "UnexpectedTokenResponseError", "as.example", "client_credentials"): 1,
        ("cold", "success", "as.example", "client_credentials"): 1,
        ("rejected", "success", "as.example", "client_credentials"): 1,
    }
    assert otel.counts("httpx_tokenauth.token.retries", "httpx_tokenauth.reason") == {("cold",): 1}
    assert otel.counts("httpx_tokenauth.replays", "httpx_tokenauth.outcome") == {("replayed",): 1}
    durations = otel.points()["httpx_tokenauth.token.request.duration"]
    assert sum(p.count for p in durations) == 3
    waits = otel.points()["httpx_tokenauth.token.wait.duration"]
    assert sum(p.count for p in waits) == 2  # the cold start, and the renewal after the 401

    spans = otel.spans()
    assert [s.name for s in spans] == ["httpx_tokenauth.token_request"] * 3
    assert all(s.kind is SpanKind.CLIENT for s in spans)
    shown = [
        (
            s.attributes["httpx_tokenauth.reason"],
            s.attributes["httpx_tokenauth.attempt"],
            s.attributes["httpx_tokenauth.outcome"],
            s.attributes["http.response.status_code"],
        )
        for s in spans
        if s.attributes is not None
    ]
    assert shown == [
        ("cold", 1, "UnexpectedTokenResponseError", 503),
        ("cold", 2, "success", 200),
        ("rejected", 1, "success", 200),
    ]
    failed, cold, rejected = spans
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "UnexpectedTokenResponseError"
    assert failed.attributes["httpx_tokenauth.rate_limit.retry_after"] == 0.0
    assert cold.status.status_code is StatusCode.UNSET
    assert rejected.attributes is not None
    assert rejected.attributes["httpx_tokenauth.rate_limit.remaining"] == 7


async def test_o3_store_outcomes_are_counted(env: Env, otel: Otel, tmp_path: Any) -> None:
    """The shared store's misses (and a hit, in another TokenAuth) reach the store counter."""
    from httpx_tokenauth import FileTokenStore, generate_encryption_key

    key = generate_encryption_key()
    env.make(
        store=FileTokenStore(tmp_path, encryption_key=key),
        meter_provider=otel.meter_provider,
    )
    await env.request()
    other_otel = Otel()
    other = env.auth_cls(
        env.provider(),
        store=FileTokenStore(tmp_path, encryption_key=key),
        clock=env.clock,
        token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
        meter_provider=other_otel.meter_provider,
    )
    try:
        assert other.get_token().access_token == "t1"  # adopted: no second request
        assert other_otel.counts("httpx_tokenauth.store.outcomes", "httpx_tokenauth.outcome") == {
            ("hit",): 1
        }
    finally:
        other.close()
        other_otel.close()
    assert otel.counts("httpx_tokenauth.store.outcomes", "httpx_tokenauth.outcome") == {
        ("miss",): 2
    }
    assert env.auth_server.count == 1


async def test_o3_no_secret_in_any_attribute(env: Env, otel: Otel) -> None:
    """Client secret, access tokens and refresh tokens appear in no span or metric attribute."""

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        body = token_json(f"tok-secret-{n}", refresh_token="rt-secret", id_token="id-secret")
        return httpx.Response(200, json=body)

    env.auth_server.reply = reply
    env.api.accept = lambda token: token != "tok-secret-1"
    env.make(meter_provider=otel.meter_provider, tracer_provider=otel.tracer_provider)
    await env.request()
    texts = []
    for span in otel.spans():
        texts += [span.name, repr(dict(span.attributes or {})), repr(span.events)]
        texts += [repr(span.status.description), repr(dict(span.resource.attributes))]
    for points in otel.points().values():
        texts += [repr(dict(p.attributes)) for p in points]
    assert len(texts) > 10
    for text in texts:
        for secret in (CLIENT_SECRET, "tok-secret-1", "tok-secret-2", "rt-secret", "id-secret"):
            assert secret not in text, (secret, text)


async def test_o3_a_custom_provider_is_named_by_its_class(otel: Otel) -> None:
    """A provider that is not a grant: spans and metrics name its class, and no host."""
    from httpx_tokenauth import Token

    class VaultProvider:
        def fetch_token(self) -> Token:
            return Token("from-vault")

    auth = TokenAuth(
        VaultProvider(), meter_provider=otel.meter_provider, tracer_provider=otel.tracer_provider
    )
    assert auth.get_token().access_token == "from-vault"
    (span,) = otel.spans()
    assert span.attributes is not None
    assert span.attributes["httpx_tokenauth.grant"] == "VaultProvider"
    assert "server.address" not in span.attributes
    assert otel.counts(
        "httpx_tokenauth.token.requests", "httpx_tokenauth.grant", "httpx_tokenauth.outcome"
    ) == {("VaultProvider", "success"): 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"telemetry": "yes"}, "telemetry must be True or False"),
        ({"telemetry": 1}, "telemetry must be True or False"),
        ({"meter_provider": object()}, "meter_provider must be an OpenTelemetry MeterProvider"),
        ({"tracer_provider": "tp"}, "tracer_provider must be an OpenTelemetry TracerProvider"),
    ],
)
def test_o3_bad_telemetry_arguments_are_refused_at_construction(
    kwargs: dict[str, Any], message: str
) -> None:
    """A non-bool switch or something that is not a provider is a ConfigurationError."""
    provider = ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with pytest.raises(ConfigurationError, match=message):
        TokenAuth(provider, **kwargs)


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_o3_without_telemetry_nothing_of_opentelemetry_is_imported() -> None:
    """A TokenAuth without telemetry fetches a token and never imports opentelemetry."""
    code = f"""
import sys, httpx
from httpx_tokenauth import ClientCredentials, TokenAuth
def handler(request):
    return httpx.Response(200, json={{"access_token": "t", "token_type": "Bearer"}})
auth = TokenAuth(ClientCredentials({TOKEN_URL!r}, client_id="c", client_secret="s" * 16),
                 token_client=httpx.Client(transport=httpx.MockTransport(handler)))
auth.get_token()
print(auth.stats().requests(), [m for m in sys.modules if m.startswith("opentelemetry")])
"""
    assert run_python(code) == "1 []"


def test_o3_telemetry_without_the_package_says_what_to_install() -> None:
    """telemetry=True where opentelemetry-api cannot be imported: a ConfigurationError naming
    the extra, at construction."""
    code = f"""
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed
from httpx_tokenauth import ClientCredentials, ConfigurationError, TokenAuth
try:
    TokenAuth(ClientCredentials({TOKEN_URL!r}, client_id="c", client_secret="s" * 16),
              telemetry=True)
except ConfigurationError as exc:
    print(exc)
"""
    assert "pip install 'httpx-tokenauth[otel]'" in run_python(code)


def test_o3_telemetry_true_uses_the_global_providers() -> None:
    """telemetry=True reports through whatever providers the application set globally."""
    code = f"""
import httpx
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from httpx_tokenauth import ClientCredentials, TokenAuth
reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(tracer_provider)
def handler(request):
    return httpx.Response(200, json={{"access_token": "t", "token_type": "Bearer"}})
auth = TokenAuth(ClientCredentials({TOKEN_URL!r}, client_id="c", client_secret="s" * 16),
                 token_client=httpx.Client(transport=httpx.MockTransport(handler)),
                 telemetry=True)
auth.get_token()
names = sorted(m.name for rm in reader.get_metrics_data().resource_metrics
               for sm in rm.scope_metrics for m in sm.metrics)
print(len(exporter.get_finished_spans()), names)
"""
    assert run_python(code) == (
        "1 ['httpx_tokenauth.token.request.duration', 'httpx_tokenauth.token.requests', "
        "'httpx_tokenauth.token.wait.duration']"
    )
