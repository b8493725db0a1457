"""Business metrics (SPEC §8), exported with prometheus-client.

The engine and the webhook receiver call the small `record_*` functions; the API serves
`/metrics`, and a worker serves its own registry with `start_worker_metrics`. The Temporal SDK
exports its own metrics (workflow/activity task latencies, poll counts...) from its Rust core on
a separate port: build the worker's client with `make_runtime(bind)`.

`campaigns_by_status` is a gauge that `refresh_campaigns_by_status` sets from one grouped,
indexed query; the API refreshes it in the background every few seconds, so a scrape of
`/metrics` never touches the database.
"""

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from sqlalchemy import func, select
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import CampaignRow

log = logging.getLogger(__name__)

# Label values are closed sets: anything else is counted as "other", so a bug or a new provider
# error never creates unbounded time series.
_OUTCOMES = frozenset(status.value for status in MessageStatus)
_ERROR_CLASSES = frozenset(error_class.value for error_class in ErrorClass)
# WhatsApp's rate limits: per-number throughput, per-recipient pair, messaging-limit tier.
RATE_LIMIT_CLASSES = frozenset(
    {ErrorClass.THROUGHPUT_LIMITED, ErrorClass.PAIR_LIMITED, ErrorClass.MESSAGING_LIMITED}
)

MESSAGES = Counter(
    "campaigns_messages",  # exported as campaigns_messages_total
    "Send attempts by outcome: a message status (sent, failed, invalid_contact, blocked, "
    "retrying...) as the engine recorded it after the attempt.",
    ["outcome"],
)
SEND_SECONDS = Histogram(
    "campaigns_send_seconds",
    "Latency of one WhatsApp send call (the provider request only, not the store writes).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RATE_LIMIT_HITS = Counter(
    "campaigns_rate_limit_hits",  # exported as campaigns_rate_limit_hits_total
    "WhatsApp rate-limit errors by error class (throughput_limited, pair_limited, "
    "messaging_limited).",
    ["error_class"],
)
SEND_ERRORS = Counter(
    "campaigns_send_errors",  # exported as campaigns_send_errors_total
    "Failed send attempts by error class (auth and account errors stop the campaign; "
    "messaging_limited throttles the sender for hours).",
    ["error_class"],
)
WEBHOOK_LAG = Histogram(
    "campaigns_webhook_lag_seconds",
    "Time from a status's own timestamp (set by WhatsApp) to its arrival at our webhook.",
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
WEBHOOK_APPLY_DELAY = Histogram(
    "campaigns_webhook_apply_delay_seconds",
    "Time from a webhook's receipt (stored in the inbox, answered 200) to its application.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
WEBHOOK_BACKLOG = Gauge(
    "campaigns_webhook_backlog",
    "Received webhooks waiting in the inbox to be applied (store-wide).",
)
WEBHOOK_BACKLOG_AGE = Gauge(
    "campaigns_webhook_backlog_age_seconds",
    "Age of the oldest received webhook not applied yet (0 when none waits).",
)
WEBHOOK_DEAD_LETTERS = Gauge(
    "campaigns_webhook_dead_letters",
    "Received webhooks set aside because applying them failed for a reason a retry cannot fix.",
)
CAMPAIGNS_BY_STATUS = Gauge(
    "campaigns_by_status",
    "Campaigns in each status, across all accounts (refreshed periodically from the store; "
    "every API replica reports the same value: aggregate with max, not sum).",
    ["status"],
)


def _label(value: str, known: frozenset[str]) -> str:
    return value if value in known else "other"


def record_send(outcome: MessageStatus | str, seconds: float | None = None) -> None:
    """One send attempt: its resulting message status, and how long the WhatsApp call took
    (None when no call was made, e.g. a template error found before sending)."""
    MESSAGES.labels(outcome=_label(str(outcome), _OUTCOMES)).inc()
    if seconds is not None:
        SEND_SECONDS.observe(max(0.0, seconds))


@contextmanager
def time_send() -> Iterator[None]:
    """Observe the latency of the WhatsApp call in the block, whether it succeeds or raises."""
    started = time.monotonic()
    try:
        yield
    finally:
        SEND_SECONDS.observe(time.monotonic() - started)


def record_rate_limit(error_class: ErrorClass | str) -> None:
    """Count a rate-limit error; other error classes are ignored, so that the engine can call
    this for every failed send."""
    if str(error_class) in RATE_LIMIT_CLASSES:
        RATE_LIMIT_HITS.labels(error_class=str(error_class)).inc()


def record_send_error(error_class: ErrorClass | str) -> None:
    """A failed send attempt: counted by error class, and as a rate-limit hit if it is one."""
    SEND_ERRORS.labels(error_class=_label(str(error_class), _ERROR_CLASSES)).inc()
    record_rate_limit(error_class)


def record_webhook_lag(seconds: float) -> None:
    """now - the status's timestamp; clamped at 0 (WhatsApp's clock may run ahead of ours)."""
    WEBHOOK_LAG.observe(max(0.0, seconds))


def record_webhook_applied(delays: Iterable[float]) -> None:
    """Seconds from receipt to application of each payload of an applied batch."""
    for seconds in delays:
        WEBHOOK_APPLY_DELAY.observe(max(0.0, seconds))


def set_webhook_backlog(waiting: int, oldest_seconds: float, dead_letters: int) -> None:
    WEBHOOK_BACKLOG.set(waiting)
    WEBHOOK_BACKLOG_AGE.set(oldest_seconds)
    WEBHOOK_DEAD_LETTERS.set(dead_letters)


def set_campaigns_by_status(counts: Iterable[tuple[str, int]]) -> None:
    """Set the gauge for every status: statuses absent from `counts` go back to 0."""
    by_status = dict.fromkeys((status.value for status in CampaignStatus), 0)
    for status, count in counts:
        if status in by_status:
            by_status[status] = count
    for status, count in by_status.items():
        CAMPAIGNS_BY_STATUS.labels(status=status).set(count)


def refresh_campaigns_by_status(db: Database) -> None:
    """One `GROUP BY status` over the campaigns table (indexed on status)."""
    with db.session() as session:
        rows = session.execute(
            select(CampaignRow.status, func.count()).group_by(CampaignRow.status)
        ).all()
    set_campaigns_by_status((status, int(count)) for status, count in rows)


def start_worker_metrics(port: int, addr: str = "0.0.0.0") -> None:
    """Serve the default registry on `http://addr:port/metrics` from a daemon thread (for the
    worker process, which has no web app of its own)."""
    start_http_server(port, addr=addr)
    log.info("worker metrics on http://%s:%d/metrics", addr, port)


def make_runtime(metrics_bind: str | None) -> Runtime:
    """A Temporal runtime that exports the SDK's own metrics in Prometheus format on
    `metrics_bind` ("0.0.0.0:9465"); without it, the SDK's default runtime (no metrics).

    Pass it to `Client.connect(..., runtime=...)`; create one per process (it owns threads).
    """
    if metrics_bind is None:
        return Runtime.default()
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=metrics_bind)))
