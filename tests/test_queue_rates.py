"""A number's rate is set on the Temporal server for its send queue (SPEC §11): only when it
is new or changed, and a call that fails (Temporal unreachable) is tried again on the next
re-read, so the change is not lost. Against a stand-in for the workflow service."""

import logging
from typing import Any, cast

import pytest
from temporalio.api.workflowservice.v1 import UpdateTaskQueueConfigRequest
from temporalio.client import Client

from whatsapp_campaigns.workers.queue_rates import QueueRates


class _Service:
    def __init__(self) -> None:
        self.requests: list[UpdateTaskQueueConfigRequest] = []
        self.unreachable = False

    async def update_task_queue_config(self, request: UpdateTaskQueueConfigRequest) -> None:
        if self.unreachable:
            raise RuntimeError("connection refused")
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
