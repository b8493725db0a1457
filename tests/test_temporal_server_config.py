"""The Temporal dev server runs with the dynamic config the project deploys
(whatsapp_campaigns.processes.TEMPORAL_DYNAMIC_CONFIG, deploy/temporal/dynamicconfig.yaml)."""

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

COMPLETIONS_DURING_ONE_TASK = 150  # signals stand in for send completions: 150 buffered events

_release = threading.Event()
_started = threading.Event()


@activity.defn
def hold_the_workflow_task() -> None:
    """Runs inside the workflow's first task (a local activity): events arriving meanwhile are
    buffered by the server until the task completes."""
    _started.set()
    _release.wait(30)


@workflow.defn(sandboxed=False)
class CountsSignals:
    def __init__(self) -> None:
        self.signals = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.execute_local_activity(
            hold_the_workflow_task, start_to_close_timeout=timedelta(seconds=30)
        )
        return self.signals

    @workflow.signal
    def completed(self) -> None:
        self.signals += 1


async def test_a_workflow_task_in_flight_outlives_a_flood_of_150_events(
    dev_server: WorkflowEnvironment,
) -> None:
    """With Temporal's default (100 buffered events) the 101st would force-fail the task in
    flight (FORCE_CLOSE_COMMAND) and the worker would redo it from the history."""
    client = dev_server.client
    queue = f"buffered-{uuid.uuid4().hex[:8]}"
    _release.clear()
    _started.clear()
    with ThreadPoolExecutor(max_workers=2) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[CountsSignals],
            activities=[hold_the_workflow_task],
            activity_executor=executor,
        ):
            handle = await client.start_workflow(
                CountsSignals.run,
                id=queue,
                task_queue=queue,
                task_timeout=timedelta(seconds=60),
            )
            assert await asyncio.to_thread(_started.wait, 30)
            for _ in range(COMPLETIONS_DURING_ONE_TASK):
                await handle.signal(CountsSignals.completed)
            _release.set()
            assert await handle.result() == COMPLETIONS_DURING_ONE_TASK

    # (An UnhandledCommand failure may follow: the signals are new to the completing task.)
    causes = [
        WorkflowTaskFailedCause.Name(event.workflow_task_failed_event_attributes.cause)
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert "WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND" not in causes
