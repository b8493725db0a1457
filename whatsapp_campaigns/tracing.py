"""Tracing with OpenTelemetry: one trace from a REST call through the campaign workflow and its
send activities to the Graph API request. Off unless an OTLP endpoint is configured.

- `start(settings, service)` at process start-up (the API in `create_app`, the worker in
  `run_worker`): with `CAMPAIGNS_OTLP_ENDPOINT` (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans go there over OTLP/HTTP in batches.
- `temporal_interceptors()`: what `temporal_client.connect` hands every Temporal client, so
  client calls, workflows and activities carry the trace in Temporal headers
  (`temporalio.contrib.opentelemetry.TracingInterceptor`).
- Outgoing httpx requests (the Graph API) and the FastAPI app get the OpenTelemetry
  instrumentations. Neither records bodies; headers are recorded only when an operator asks
  for them (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`), and the ones that carry secrets are
  always redacted then. Spans never get a phone number or message content from this project.

The OpenTelemetry SDK, its exporter and instrumentations (and FastAPI with them) are imported
only once tracing is switched on: with tracing off they were a tenth of a worker's memory at
rest (about 11 MiB of 119 MiB after imports, bench/RESULTS.md) for code that never ran.
"""

import logging
import os
from typing import TYPE_CHECKING

from temporalio.client import Interceptor

from whatsapp_campaigns.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

# Redacted whenever an operator turns header capture on: the Graph API token, our API keys,
# dashboard sessions, Meta's webhook signatures.
SECRET_HEADERS = ("authorization", "cookie", "set-cookie", "x-hub-signature-256")
SANITIZE_FIELDS_ENV = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
# Probes and scrapes would be most of the API's spans and say nothing; Meta's webhook handshake
# carries our verify token in its query string (and webhooks start no campaign trace anyway).
UNTRACED_URLS = "/healthz,/metrics,/webhooks/"

_provider: "TracerProvider | None" = None


def otlp_endpoint(settings: Settings) -> str | None:
    """Where traces go (the OTLP/HTTP traces URL), or None: tracing off."""
    if settings.otlp_endpoint:
        return f"{settings.otlp_endpoint.rstrip('/')}/v1/traces"
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None


def start(settings: Settings, service_name: str) -> bool:
    """Trace this process to the configured OTLP endpoint; False (and nothing done) without
    one. Idempotent: the first call in a process wins. `OTEL_SERVICE_NAME` and
    `OTEL_TRACES_SAMPLER` apply as usual."""
    if _provider is not None:
        return True
    endpoint = otlp_endpoint(settings)
    if endpoint is None:
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    install(provider)
    log.info("tracing: %s sends spans to %s", service_name, endpoint)
    return True


def install(provider: "TracerProvider") -> None:
    """Trace with `provider` from now on (`start` calls it; tests hand in their own)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    global _provider
    _redact_secret_headers()
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _provider = provider


def uninstall() -> None:
    """Stop tracing new work (the provider stays its owner's to shut down)."""
    global _provider
    if _provider is not None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().uninstrument()
        _provider = None


def flush() -> None:
    """Export the spans still in the batch (before a process ends without atexit handlers)."""
    if _provider is not None:
        _provider.force_flush()


def temporal_interceptors() -> list[Interceptor]:
    """Interceptors for a Temporal client: the workers built on it inherit them."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_provider.get_tracer(__name__))]


def instrument_app(app: "FastAPI") -> None:
    """One server span per request (not for UNTRACED_URLS), when tracing is on."""
    if _provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=_provider,
            excluded_urls=UNTRACED_URLS,
            exclude_spans=["receive", "send"],
        )


def _redact_secret_headers() -> None:
    """Add SECRET_HEADERS to the fields the instrumentations redact (they read it from the
    environment only), keeping whatever the operator listed."""
    listed = [f.strip() for f in os.environ.get(SANITIZE_FIELDS_ENV, "").split(",") if f.strip()]
    missing = [h for h in SECRET_HEADERS if h not in {f.lower() for f in listed}]
    os.environ[SANITIZE_FIELDS_ENV] = ",".join([*listed, *missing])
