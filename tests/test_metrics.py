"""Business metrics: what the engine and the receiver record, the status gauge from the store,
and how /metrics and a worker serve them."""

import socket
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.runtime import Runtime

from tests.api_helpers import api_client, draft_body, move_to, seed
from whatsapp_campaigns import metrics
from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import CampaignDraft
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store import campaigns
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _delta(name: str, action: Callable[[], None], **labels: str) -> float:
    before = _value(name, **labels)
    action()
    return _value(name, **labels) - before


def test_record_send_counts_the_outcome() -> None:
    counted = _delta(
        "campaigns_messages_total",
        lambda: metrics.record_send(MessageStatus.SENT, 0.05),
        outcome="sent",
    )
    assert counted == 1


def test_record_send_observes_the_latency() -> None:
    observed = _delta("campaigns_send_seconds_count", lambda: metrics.record_send("failed", 0.2))
    assert observed == 1


def test_record_send_without_a_call_observes_no_latency() -> None:
    observed = _delta("campaigns_send_seconds_count", lambda: metrics.record_send("blocked"))
    assert observed == 0


def test_an_unknown_outcome_is_counted_as_other() -> None:
    counted = _delta(
        "campaigns_messages_total", lambda: metrics.record_send("exploded"), outcome="other"
    )
    assert counted == 1


def test_record_rate_limit_counts_by_error_class() -> None:
    counted = _delta(
        "campaigns_rate_limit_hits_total",
        lambda: metrics.record_rate_limit(ErrorClass.MESSAGING_LIMITED),
        error_class="messaging_limited",
    )
    assert counted == 1


def test_record_rate_limit_ignores_other_error_classes() -> None:
    metrics.record_rate_limit(ErrorClass.BLOCKED)
    labels = {"error_class": "blocked"}
    assert REGISTRY.get_sample_value("campaigns_rate_limit_hits_total", labels) is None


def test_record_send_error_counts_by_error_class() -> None:
    counted = _delta(
        "campaigns_send_errors_total",
        lambda: metrics.record_send_error(ErrorClass.AUTH),
        error_class="auth",
    )
    assert counted == 1


def test_a_rate_limited_send_error_is_also_a_rate_limit_hit() -> None:
    counted = _delta(
        "campaigns_rate_limit_hits_total",
        lambda: metrics.record_send_error(ErrorClass.PAIR_LIMITED),
        error_class="pair_limited",
    )
    assert counted == 1


def test_an_unknown_error_class_is_counted_as_other() -> None:
    counted = _delta(
        "campaigns_send_errors_total",
        lambda: metrics.record_send_error("kaboom"),
        error_class="other",
    )
    assert counted == 1


def test_time_send_observes_a_call_that_raises() -> None:
    before = _value("campaigns_send_seconds_count")
    with pytest.raises(TimeoutError), metrics.time_send():
        raise TimeoutError
    assert _value("campaigns_send_seconds_count") == before + 1


def test_webhook_lag_ahead_of_our_clock_counts_as_zero() -> None:
    before = _value("campaigns_webhook_lag_seconds_sum")
    metrics.record_webhook_lag(-3.0)
    assert _value("campaigns_webhook_lag_seconds_sum") == before


def test_webhook_lag_is_observed_in_seconds() -> None:
    in_bucket = _delta(
        "campaigns_webhook_lag_seconds_bucket", lambda: metrics.record_webhook_lag(2.0), le="2.5"
    )
    assert in_bucket == 1


def test_campaigns_by_status_comes_from_the_store(db: Database) -> None:
    seed(db)
    draft = CampaignDraft.model_validate(draft_body())
    ids = [campaigns.create_draft(db, SANDBOX_ACCOUNT_ID, draft).id for _ in range(3)]
    move_to(db, ids[0], CampaignStatus.QUEUED, CampaignStatus.SENDING)
    metrics.refresh_campaigns_by_status(db)
    assert _value("campaigns_by_status", status="draft") == 2
    assert _value("campaigns_by_status", status="sending") == 1


def test_campaigns_by_status_goes_back_to_zero_for_emptied_statuses() -> None:
    metrics.set_campaigns_by_status([("paused", 4)])
    metrics.set_campaigns_by_status([])
    assert _value("campaigns_by_status", status="paused") == 0


async def test_the_api_serves_the_metrics(db: Database) -> None:
    metrics.record_send("sent", 0.01)
    async with api_client(db) as api:
        response = await api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert 'campaigns_messages_total{outcome="sent"}' in response.text
    assert "# HELP campaigns_send_seconds" in response.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_worker_metrics_are_served_over_http() -> None:
    port = _free_port()
    metrics.start_worker_metrics(port, addr="127.0.0.1")
    response = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert "campaigns_messages_total" in response.text


def test_make_runtime_without_a_bind_is_the_default_runtime() -> None:
    assert metrics.make_runtime(None) is Runtime.default()


def test_make_runtime_serves_the_sdk_metrics_on_the_bind_address() -> None:
    port = _free_port()
    runtime = metrics.make_runtime(f"127.0.0.1:{port}")
    assert isinstance(runtime, Runtime)
    assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
