"""OpenTelemetry metrics and spans for token requests, when asked for (SPEC O3).

Only ``TokenAuth(..., telemetry=True)`` (or a ``meter_provider=`` /
``tracer_provider=``) loads this module's OpenTelemetry imports; without it
nothing of OpenTelemetry is imported, installed or not. It needs
``opentelemetry-api`` (``pip install 'httpx-tokenauth[otel]'``); the SDK and
exporters are the application's choice.

Attributes carry no secret and few values: the token endpoint's host, the
grant, the reason, the outcome (``success``, an error class name,
``cancelled``), the attempt number and the HTTP status (spans only).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._stats import SUCCESS, Attempt
from ._token import RateLimit

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["NAME", "Telemetry", "telemetry_for"]

#: The instrumentation scope: meter and tracer name.
NAME = "httpx_tokenauth"
SPAN_NAME = "httpx_tokenauth.token_request"

#: Histogram buckets in seconds (token requests and waits take milliseconds to seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HOST = "server.address"
GRANT = "httpx_tokenauth.grant"
REASON = "httpx_tokenauth.reason"
OUTCOME = "httpx_tokenauth.outcome"
ATTEMPT = "httpx_tokenauth.attempt"


def telemetry_for(
    telemetry: object,
    meter_provider: object,
    tracer_provider: object,
    *,
    host: str | None,
    grant: str,
) -> Telemetry | None:
    """TokenAuth's ``telemetry=`` / ``meter_provider=`` / ``tracer_provider=``, checked.

    None when none of them asks for telemetry; otherwise the instruments, or a
    ConfigurationError saying what to install or pass.
    """
    if not isinstance(telemetry, bool):
        raise ConfigurationError(
            f"telemetry must be True or False, got {type(telemetry).__name__} "
            f"{str(telemetry)[:40]!r}"
        )
    if not telemetry and meter_provider is None and tracer_provider is None:
        return None
    if importlib.util.find_spec("opentelemetry") is None or (
        importlib.util.find_spec("opentelemetry.metrics") is None
    ):
        raise ConfigurationError(
            "telemetry needs the OpenTelemetry API: pip install 'httpx-tokenauth[otel]' "
            "(or opentelemetry-api), or leave telemetry off"
        )
    for name, value, method in (
        ("meter_provider", meter_provider, "get_meter"),
        ("tracer_provider", tracer_provider, "get_tracer"),
    ):
        if value is not None and not callable(getattr(value, method, None)):
            raise ConfigurationError(
                f"{name} must be an OpenTelemetry {name.title().replace('_', '')} (with "
                f"{method}()), got {type(value).__name__}; or leave it out to use the "
                "globally configured one"
            )
    return Telemetry(meter_provider, tracer_provider, host=host, grant=grant)


class Telemetry:
    """The OpenTelemetry instruments of one TokenAuth."""

    def __init__(
        self,
        meter_provider: MeterProvider | Any | None,
        tracer_provider: TracerProvider | Any | None,
        *,
        host: str | None,
        grant: str,
    ) -> None:
        from opentelemetry import metrics, trace  # noqa: PLC0415  (only when asked for)

        from . import __version__  # noqa: PLC0415  (the package is loaded by now)

        self._trace = trace
        self.base: dict[str, str] = {GRANT: grant}
        if host is not None:
            self.base[HOST] = host
        meter = metrics.get_meter(NAME, __version__, meter_provider=meter_provider)
        self.tracer = trace.get_tracer(NAME, __version__, tracer_provider=tracer_provider)
        self.requests = meter.create_counter(
            "httpx_tokenauth.token.requests",
            unit="{request}",
            description="Requests to the token endpoint (or calls of the token provider)",
        )
        self.duration = meter.create_histogram(
            "httpx_tokenauth.token.request.duration",
            unit="s",
            description="How long one token request took",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.retries = meter.create_counter(
            "httpx_tokenauth.token.retries",
            unit="{retry}",
            description="Token requests repeated after a failure that may pass",
        )
        self.replays = meter.create_counter(
            "httpx_tokenauth.replays",
            unit="{request}",
            description="API requests after a 401: replayed with a new token, or refused",
        )
        self.stores = meter.create_counter(
            "httpx_tokenauth.store.outcomes",
            unit="{operation}",
            description="Shared token store look-ups (hit, miss) and failed operations",
        )
        self.waits = meter.create_histogram(
            "httpx_tokenauth.token.wait.duration",
            unit="s",
            description="How long a request waited for a token it did not have cached",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def start_span(self, reason: str, attempt: int) -> Any:
        return self.tracer.start_span(
            SPAN_NAME,
            kind=self._trace.SpanKind.CLIENT,
            attributes={**self.base, REASON: reason, ATTEMPT: attempt},
        )

    def request(
        self,
        attempt: Attempt,
        outcome: str,
        seconds: float,
        status: int | None,
        rate_limit: RateLimit | None,
    ) -> None:
        attributes = {**self.base, REASON: attempt.reason, OUTCOME: outcome}
        self.requests.add(1, attributes)
        self.duration.record(seconds, attributes)
        span = attempt.span
        if span is None:
            return
        span.set_attribute(OUTCOME, outcome)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if rate_limit is not None:
            for name in ("limit", "remaining", "reset", "retry_after"):
                value = getattr(rate_limit, name)
                if value is not None:
                    span.set_attribute(f"httpx_tokenauth.rate_limit.{name}", value)
        if outcome != SUCCESS:
            span.set_attribute("error.type", outcome)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, outcome))
        span.end()

    def retry(self, reason: str) -> None:
        self.retries.add(1, {**self.base, REASON: reason})

    def replay(self, replayed: bool) -> None:
        self.replays.add(1, {**self.base, OUTCOME: "replayed" if replayed else "refused"})

    def store(self, outcome: str) -> None:
        self.stores.add(1, {**self.base, OUTCOME: outcome})

    def waited(self, seconds: float) -> None:
        self.waits.record(seconds, self.base)
