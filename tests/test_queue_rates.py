"""A number's rate is set on the Temporal server for its send queue (SPEC §11): only when it
is new or changed, and a call that fails (Temporal unreachable) is tried again on the next
re-read, so the change is not lost. Against a stand-in for the workflow service."""

import asyncio
import logging
from typing import Any, cast

import pytest
from temporalio.api.workflowservice.v1 import UpdateTaskQueueConfigRequest
from temporalio.client import Client

from whatsapp_campaigns.workers.queue_rates import SET_AT_ONCE, QueueRates


class _Service:
    def __init__(self) -> None:
        self.requests: list[UpdateTaskQueueConfigRequest] = []
        self.unreachable = False
        self.latency = 0.0
        self.in_flight = self.most_in_flight = 0

    async def update_task_queue_config(self, request: UpdateTaskQueueConfigRequest) -> None:
        if self.unreachable:
            raise RuntimeError("connection refused")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.latency)
        self.in_flight -= 1
        self.requests.append(request)

    def rates(self) -> list[tuple[str, float]]:
        return [
            (r.task_queue, r.update_queue_rate_limit.rate_limit.requests_per_second)
            for r in self.requests
        ]


class _Client:
    namespace = "default"

    def __init__(self) -> None:
        self.workflow_service = _Service()


def _rates(factor: float = 1.0) -> tuple[QueueRates, _Service]:
    client = _Client()
    return QueueRates(cast(Client, client), factor=factor), client.workflow_service


async def test_a_rate_is_set_once_and_again_when_it_changes() -> None:
    rates, service = _rates()
    await rates.apply({"q-n1": 80})
    await rates.apply({"q-n1": 80})
    await rates.apply({"q-n1": 1000})
    assert service.rates() == [("q-n1", 80), ("q-n1", 1000)]


async def test_a_rate_not_set_while_temporal_is_unreachable_is_set_on_the_next_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rates, service = _rates()
    service.unreachable = True
    with caplog.at_level(logging.WARNING):
        await rates.apply({"q-n1": 80})
    assert not rates.applied("q-n1")
    assert "rate of q-n1 not set" in caplog.text
    service.unreachable = False
    await rates.apply({"q-n1": 80})
    assert rates.applied("q-n1")
    assert service.rates() == [("q-n1", 80)]


async def test_the_server_rate_is_the_number_rate_times_the_factor() -> None:
    rates, service = _rates(factor=0.5)
    await rates.apply({"q-n1": 80})
    assert service.rates() == [("q-n1", 40)]


@pytest.mark.parametrize("factor", [0, -1, 1.5])
def test_a_factor_outside_zero_to_one_is_refused(factor: float) -> None:
    with pytest.raises(ValueError, match="factor"):
        QueueRates(cast(Any, _Client()), factor=factor)


async def test_many_new_rates_are_set_several_at_a_time() -> None:
    rates, service = _rates()
    service.latency = 0.01

    await rates.apply({f"q-n{i}": 80 for i in range(10 * SET_AT_ONCE)})

    assert len(service.requests) == 10 * SET_AT_ONCE
    assert service.most_in_flight == SET_AT_ONCE  # not one at a time, and not all at once
