"""SendPartitionWorkflow: one partition of a partitioned campaign's sending (docs/scaling.md).

A campaign whose policy asks for K > 1 `send_partitions` does not send its messages itself: it
starts K of these (workflows/partitioned.py), partition k sending the messages with
id % K == k through the same dispatch loop as an unpartitioned campaign (workflows/dispatch.py:
window, pacing, retries, continue-as-new), on the number's one task queue, so the number's
rate holds across them. The campaign owns status, counts and timeline; a partition only
sends, under the state the campaign steers it with (signal `steer`: sending, paused,
cancelled, throttled), and tells the campaign (signal `partition_report`) when it finished or
when it had to stop sending (auto-pause guard on its own sends, WhatsApp refusing the sender).
Signals a send activity gives its workflow (`sender_limited`, `pause` when a template stopped)
are passed on to the campaign, which steers every partition.

Campaign and partitions signal each other by workflow id, so either side may continue as new
(the pattern of temporalio/samples-python `batch_sliding_window`).
"""

from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from whatsapp_campaigns.activities.campaign_watch import CampaignWatch
    from whatsapp_campaigns.domain.engine import (
        CampaignInput,
        PartitionInput,
        PartitionReport,
        PartitionSteer,
        SenderLimited,
    )
    from whatsapp_campaigns.domain.errors import ErrorClass
    from whatsapp_campaigns.domain.models import ActorKind
    from whatsapp_campaigns.domain.statuses import CampaignStatus

from whatsapp_campaigns.workflows.dispatch import CampaignDispatch

# Partitions check on their refresh rhythm that their campaign's workflow still runs
# (`_refresh_counts`). Histories from before it replay without the check.
CAMPAIGN_WATCH_PATCH = "partition-watches-its-campaign"


def partition_workflow_id(campaign_workflow_id: str, partition: int) -> str:
    return f"{campaign_workflow_id}/partition-{partition}"


@workflow.defn(name="SendPartitionWorkflow")
class SendPartitionWorkflow(CampaignDispatch):
    @workflow.init
    def __init__(self, input: PartitionInput) -> None:
        super().__init__(CampaignInput(campaign_id=input.campaign_id, carried=input.state))
        self._input = input
        self._partition = input.partition
        self._partitions = input.partitions
        self._steer_state = input.steer
        self._campaigns_on_sender = input.steer.campaigns_on_sender
        self._weights_on_sender = input.steer.weights_on_sender

    @workflow.run
    async def run(self, input: PartitionInput) -> None:
        await self._send_all()
        await self._report(
            PartitionReport(
                partition=self._partition,
                generation=self._steer_state.generation,
                finished=True,
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)

    # ------------------------------------------------------------- steered by the campaign

    @workflow.signal(name="steer")
    def steer(self, steer: PartitionSteer) -> None:
        if steer.generation < self._steer_state.generation:
            return  # an older state that arrived late
        s = self._s
        if s.status is CampaignStatus.PAUSED and steer.status is CampaignStatus.SENDING:
            # Resumed: the auto-pause guard counts from here, as the campaign's does.
            s.guard_settled_base, s.guard_failed_base = s.settled, s.failed
        self._steer_state = steer
        if not s.status.is_terminal:
            s.status = steer.status
        s.throttled_until = _later(s.throttled_until, steer.throttled_until)
        s.slow_until = _later(s.slow_until, steer.slow_until)
        self._campaigns_on_sender = steer.campaigns_on_sender
        self._weights_on_sender = steer.weights_on_sender
        self._set_details()

    @workflow.signal(name="pause")
    async def pause(self, payload: object = None) -> None:
        """From a send activity (a template Meta stopped): the campaign decides and steers."""
        await self._signal_campaign("pause", payload)

    async def _apply_sender_limit(self, notice: SenderLimited) -> None:
        """Hold back at once, and let the campaign record it and steer every partition."""
        s = self._s
        until = workflow.now() + notice.retry_after
        if notice.error_class is ErrorClass.MESSAGING_LIMITED:
            s.throttled_until = _later(s.throttled_until, until)
        elif notice.error_class is ErrorClass.THROUGHPUT_LIMITED:
            s.slow_until = _later(s.slow_until, until)
        await self._signal_campaign("sender_limited", notice)

    async def _change_status(
        self,
        to: CampaignStatus,
        *,
        action: str,
        reason: str | None = None,
        actor: ActorKind = ActorKind.SYSTEM,
        by: str | None = None,
    ) -> None:
        """The dispatch loop stops sending (only ever to pause): the partition stops now, the
        campaign pauses and steers the others (or, if it moved on meanwhile, steers this one
        back)."""
        self._s.status = to
        self._set_details()
        await self._report(
            PartitionReport(
                partition=self._partition,
                generation=self._steer_state.generation,
                pause_action=action,
                pause_reason=reason,
            )
        )

    # ------------------------------------------------------------------ the dispatch loop

    async def _refresh_counts(self) -> None:
        """The campaign reads the counts; a partition keeps the rhythm to check that its
        campaign's workflow still runs: one an operator terminated does not close its
        abandoned partitions, which stop sending here (the messages they did not send keep
        their status in the store, as the terminated campaign's own would)."""
        self._last_refresh = workflow.now()
        if self._s.status.is_terminal or not workflow.patched(CAMPAIGN_WATCH_PATCH):
            return
        campaign_workflow_id = self._input.campaign_workflow_id
        running = await self._control(CampaignWatch.campaign_workflow_running, campaign_workflow_id)
        if not running:
            workflow.logger.warning(
                "partition %d of campaign %s: the campaign's workflow %s is closed: "
                "the partition stops sending",
                self._partition,
                self._campaign_id,
                campaign_workflow_id,
            )
            self._s.status = CampaignStatus.CANCELLED
            self._set_details()

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        s = self._s
        s.deferred = list(self._deferred) + list(self._buffer)
        workflow.continue_as_new(
            self._input.model_copy(update={"state": s, "steer": self._steer_state})
        )

    def _set_details(self) -> None:
        s = self._s
        workflow.set_current_details(
            f"Partition {self._partition + 1} of {self._partitions} of campaign "
            f"{self._campaign_id}: {s.status.value}, {s.settled} sends settled "
            f"({s.failed} failed), {len(self._pending)} in flight"
        )

    # ------------------------------------------------------------------- to the campaign

    async def _report(self, report: PartitionReport) -> None:
        await self._signal_campaign("partition_report", report)

    async def _signal_campaign(self, name: str, arg: object) -> None:
        handle = workflow.get_external_workflow_handle(self._input.campaign_workflow_id)
        try:
            await handle.signal(name, arg)
        except FailureError as error:  # the campaign was closed (terminated by an operator)
            workflow.logger.warning(
                "partition %d of campaign %s: signal %s not delivered: %s",
                self._partition,
                self._campaign_id,
                name,
                error,
            )


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b > a) else a
