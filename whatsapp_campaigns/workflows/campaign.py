"""CampaignWorkflow: one campaign from its schedule timer to its final status (SPEC §5).

Lifecycle: scheduled (durable timer; reschedule moves it) → queued (preflight, credits reserved)
→ sending (one send activity per message, bounded window) ↔ paused → completed / failed /
cancelled. Operators steer it with the signals pause/resume/cancel/reschedule or the matching
validated updates; `progress` answers what the dashboard and the CLI show.

Deterministic and sandbox-safe: every read and write goes through activities; the workflow only
holds ids, counts and statuses. Sending continues as new every `MESSAGES_PER_RUN` messages so
that no history grows past a few thousand events, whatever the audience size.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from whatsapp_campaigns.domain.engine import CampaignInput
    from whatsapp_campaigns.domain.models import Progress
    from whatsapp_campaigns.domain.statuses import CampaignStatus

from whatsapp_campaigns.workflows.commands import OperatorCommands
from whatsapp_campaigns.workflows.partitioned import PartitionedSending

# Statuses in which a run that did not continue from another starts with the preflight.
_PREFLIGHT_STATUSES = (CampaignStatus.QUEUED, CampaignStatus.SENDING, CampaignStatus.PAUSED)


@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow(OperatorCommands, PartitionedSending):
    """State and lifecycle: workflows/lifecycle.py; the dispatch loop and the `sender_limited`
    signal: workflows/dispatch.py; sending through child workflows (policy `send_partitions`)
    and the `partition_report` signal: workflows/partitioned.py; operator signals and updates:
    workflows/commands.py."""

    @workflow.init
    def __init__(self, input: CampaignInput) -> None:
        super().__init__(input)

    @workflow.run
    async def run(self, input: CampaignInput) -> Progress:
        if not self._loaded:
            await self._load()
        self._upsert_search_attributes()

        if self._s.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            await self._wait_for_send_time()
        if input.carried is None and self._s.status in _PREFLIGHT_STATUSES:
            await self._preflight()  # idempotent: a restarted or retried campaign runs it again
        if self._s.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
            await self._send_all()
        await self._finish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress()
