"""Partitioned sending: a campaign whose policy asks for K > 1 `send_partitions` sends through
K child workflows (workflows/send_partition.py) instead of its own dispatch loop.

Why: every message is a few mutations of the workflow execution that schedules its send, and
one execution's mutations are applied one after the other; docs/scaling.md works out that one
execution carries a standard number (80 msg/s) but not a 1,000 msg/s number on a replicated
cluster. K executions carry K times as much, on the same task queue and rate.

The campaign keeps everything an operator sees and steers (status, counts, timeline, signals
and updates, search attributes, the final status): while its partitions send, it re-reads the
counts every 5 s, passes its state down when it changes (signal `steer`: sending, paused,
cancelled, throttled, the number's share) and hears from them by signal `partition_report`
(finished, or stopped sending and asks for a pause). Both sides address each other by workflow
id and the partitions are abandoned rather than closed with the campaign's run, so the campaign
may continue as new while they send (temporalio/samples-python `batch_sliding_window`).
"""

import asyncio
import contextlib

from temporalio import workflow
from temporalio.exceptions import FailureError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from whatsapp_campaigns.domain.engine import (
        CampaignInput,
        PartitionInput,
        PartitionReport,
        PartitionSteer,
    )
    from whatsapp_campaigns.domain.statuses import CampaignStatus

from whatsapp_campaigns.workflows.dispatch import CampaignDispatch
from whatsapp_campaigns.workflows.send_partition import (
    SendPartitionWorkflow,
    partition_workflow_id,
)


class PartitionedSending(CampaignDispatch):
    def __init__(self, input: CampaignInput) -> None:
        super().__init__(input)
        self._steered: PartitionSteer | None = None  # what the partitions were last told
        self._resteer: set[int] = set()  # partitions to tell again (they paused on their own)

    async def _send_all(self) -> None:
        if self._s.policy.send_partitions <= 1:
            await super()._send_all()
        else:
            await self._send_partitioned()

    async def _send_partitioned(self) -> None:
        s = self._s
        if s.deadline_at is None:
            s.deadline_at = workflow.now() + s.policy.sending_deadline
        if not s.partitions_started:
            await self._start_partitions()
            s.partitions_started = True
        while not self._partitions_done():
            if await self._refresh_due():
                continue
            if self._steer_due():
                await self._steer_partitions()
                continue
            if self._history_too_long():
                await self._continue_as_new()
            # Until the next count refresh; not bounded by the deadline: each partition stops
            # at it by itself, and the campaign waits for their reports.
            timeout = (self._last_refresh or workflow.now()) + self._refresh_interval()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._steer_due() or self._partitions_done(),
                    timeout=max((timeout - workflow.now()).total_seconds(), 0.001),
                )

    def _sending_now(self) -> bool:
        partitions_sending = self._s.partitions_started and not self._partitions_done()
        return partitions_sending or super()._sending_now()

    def _partitions_done(self) -> bool:
        return len(self._s.partitions_finished) >= self._s.policy.send_partitions

    async def _start_partitions(self) -> None:
        s = self._s
        partitions = s.policy.send_partitions
        steer = self._next_steer()
        # Each partition gets the campaign's settings and a clean slate; its auto-pause guard
        # judges its own sends, a K-th of the campaign's, so after a K-th of the minimum.
        min_sends = -(-s.policy.auto_pause_min_sends // partitions)
        state = s.model_copy(
            update={
                "policy": s.policy.model_copy(update={"auto_pause_min_sends": min_sends}),
                "timeline": [],
                "counts": {},
                "errors": [],
            }
        )
        campaign_workflow_id = workflow.info().workflow_id
        await asyncio.gather(
            *(
                workflow.start_child_workflow(
                    SendPartitionWorkflow.run,
                    PartitionInput(
                        campaign_id=self._campaign_id,
                        campaign_workflow_id=campaign_workflow_id,
                        partition=k,
                        partitions=partitions,
                        state=state,
                        steer=steer,
                    ),
                    id=partition_workflow_id(campaign_workflow_id, k),
                    task_queue=workflow.info().task_queue,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
                for k in range(partitions)
            )
        )
        self._steered = steer

    # ----------------------------------------------------------------- steering them

    def _current_steer(self, generation: int) -> PartitionSteer:
        s = self._s
        return PartitionSteer(
            generation=generation,
            status=s.status,
            throttled_until=s.throttled_until,
            slow_until=s.slow_until,
            campaigns_on_sender=self._campaigns_on_sender,
            weights_on_sender=self._weights_on_sender,
        )

    def _steer_due(self) -> bool:
        return bool(self._resteer) or self._state_changed()

    def _state_changed(self) -> bool:
        """The campaign's state differs from what the partitions were last told."""
        steered = self._steered
        return steered is None or self._current_steer(steered.generation) != steered

    def _next_steer(self) -> PartitionSteer:
        self._s.steer_generation += 1
        return self._current_steer(self._s.steer_generation)

    async def _steer_partitions(self) -> None:
        """Tell every running partition the campaign's state if it changed, else tell those
        that paused on their own (and the campaign did not follow) to go on."""
        if self._state_changed() or self._steered is None:
            steer = self._next_steer()
            targets = set(range(self._s.policy.send_partitions))
        else:
            steer, targets = self._steered, set(self._resteer)
        self._steered = steer
        self._resteer.clear()
        targets -= set(self._s.partitions_finished)
        await asyncio.gather(*(self._signal_partition(k, steer) for k in sorted(targets)))

    async def _signal_partition(self, partition: int, steer: PartitionSteer) -> None:
        workflow_id = partition_workflow_id(workflow.info().workflow_id, partition)
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal("steer", steer)
        except FailureError as error:  # it finished meanwhile; its report is on its way
            workflow.logger.info("partition %s not steered: %s", workflow_id, error)

    # -------------------------------------------------------------- hearing from them

    @workflow.signal(name="partition_report")
    async def partition_report(self, report: PartitionReport) -> None:
        """From a partition: it finished, or it stopped sending and asks for a pause."""
        await workflow.wait_condition(lambda: self._loaded)
        s = self._s
        if report.finished:
            if report.partition not in s.partitions_finished:
                s.partitions_finished.append(report.partition)
            return
        current = report.generation == s.steer_generation
        if current and s.status is CampaignStatus.SENDING:
            await self._change_status(
                CampaignStatus.PAUSED,
                action=report.pause_action or "pause",
                reason=report.pause_reason,
            )
        else:  # it judged a state the campaign has left (resumed, cancelled): steer it again
            self._resteer.add(report.partition)
