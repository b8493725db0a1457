"""Numbers are served without restarting a worker (SPEC §11): a number added, re-rated or
removed in the store gets, changes or loses its send worker and its server-held rate at the
next re-read (CAMPAIGNS_SENDER_REFRESH_SECONDS), on a real dev server; a registered number
without work has no worker."""

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import ordinary_numbers, running_engine
from whatsapp_campaigns.activities.sending import SendActivities
from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.domain.tenancy import PhoneNumberInfo
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.sandbox.fixtures import (
    SANDBOX_HIGH_DISPLAY_NUMBER,
    SANDBOX_HIGH_SENDER_ID,
)
from whatsapp_campaigns.workers.send_workers import SendWorkers
from whatsapp_campaigns.workflows.task_queues import send_task_queue

HIGH = PhoneNumberInfo(
    phone_number_id=SANDBOX_HIGH_SENDER_ID,
    display_number=SANDBOX_HIGH_DISPLAY_NUMBER,
    throughput_level="HIGH",
)


async def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the refresh"
        await asyncio.sleep(0.05)


async def server_rate(client: Client, queue: str) -> float | None:
    """The rate the Temporal server holds an activity task queue to (None: not set)."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_config=True,
        )
    )
    limit = answer.config.queue_rate_limit
    return limit.rate_limit.requests_per_second if limit.HasField("rate_limit") else None


def _sender(number: str, rate: int) -> Sender:
    return Sender(
        phone_number_id=number, account_id="a", display_number="+12025550111", rate_per_second=rate
    )


async def test_send_workers_follow_the_numbers_added_re_rated_and_removed(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    async with running_engine(dev_server.client, db_url) as engine:
        numbers = [_sender("n1", 80)]
        providers = AccountProviders(engine.settings, engine.db)
        activities = SendActivities(engine.db, providers, reconcile_window=timedelta(seconds=1))
        workers = SendWorkers(
            engine.client, "send-workers-test", activities, lambda: list(numbers), refresh=0.1
        )
        running = asyncio.create_task(workers.run())
        await _eventually(lambda: workers.rates == {"n1": 80})
        assert await server_rate(engine.client, send_task_queue("send-workers-test", "n1")) == 80
        numbers.append(_sender("n2", 80))
        await _eventually(lambda: workers.rates == {"n1": 80, "n2": 80})
        numbers[0] = _sender("n1", 1000)  # Meta's upgrade
        await _eventually(lambda: workers.rates == {"n1": 1000, "n2": 80})
        assert await server_rate(engine.client, send_task_queue("send-workers-test", "n1")) == 1000
        del numbers[1]  # senders remove
        await _eventually(lambda: workers.rates == {"n1": 1000})
        await workers.shutdown()
        await running
        assert workers.rates == {}
        await providers.aclose()


async def test_a_registered_number_gets_a_worker_only_while_it_is_in_use(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    async with running_engine(dev_server.client, db_url) as engine:
        numbers = [_sender("idle", 80), _sender("busy", 80)]
        in_use = {"busy"}
        providers = AccountProviders(engine.settings, engine.db)
        activities = SendActivities(engine.db, providers, reconcile_window=timedelta(seconds=1))
        workers = SendWorkers(
            engine.client,
            "send-workers-in-use",
            activities,
            lambda: list(numbers),
            refresh=0.1,
            numbers_in_use=lambda: set(in_use),
        )
        running = asyncio.create_task(workers.run())
        await _eventually(lambda: workers.rates == {"busy": 80})
        # The idle number's rate is on the server already, ready for its first campaign.
        idle_queue = send_task_queue("send-workers-in-use", "idle")
        assert await server_rate(engine.client, idle_queue) == 80
        in_use.add("idle")  # a campaign starts on it
        await _eventually(lambda: workers.rates == {"busy": 80, "idle": 80})
        in_use.discard("busy")  # its campaigns finished
        await _eventually(lambda: workers.rates == {"idle": 80})
        await workers.shutdown()
        await running
        await providers.aclose()


async def test_a_campaign_on_a_number_added_after_the_worker_started_completes(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    async with running_engine(dev_server.client, db_url, sender_refresh_seconds=0.5) as engine:
        catalog.register_sender(engine.db, SANDBOX_ACCOUNT_ID, HIGH)  # `senders add`, later
        campaign_id = await engine.campaign(ordinary_numbers(20), sender=SANDBOX_HIGH_SENDER_ID)
        final = await asyncio.wait_for(engine.run(campaign_id), timeout=60)
    assert final.status is CampaignStatus.COMPLETED
    assert final.total == 20


async def test_a_campaign_that_starts_sending_is_served_before_the_next_re_read(
    dev_server: WorkflowEnvironment, db_url: str
) -> None:
    # A re-read every 10 minutes: only the campaign's own start can get its number a worker.
    async with running_engine(dev_server.client, db_url, sender_refresh_seconds=600) as engine:
        campaign_id = await engine.campaign(ordinary_numbers(20))
        final = await asyncio.wait_for(engine.run(campaign_id), timeout=120)
    assert final.status is CampaignStatus.COMPLETED
    assert final.total == 20
