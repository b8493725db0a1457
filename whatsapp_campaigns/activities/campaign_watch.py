"""What a send partition asks Temporal itself: whether its campaign's workflow still runs.

A partition (workflows/send_partition.py) is started with `ParentClosePolicy.ABANDON`, so that
its campaign may continue as new while it sends; the price is that a campaign workflow an
operator terminates (Temporal UI, `temporal workflow terminate`) does not take its partitions
with it. Each partition asks this on its count-refresh rhythm and stops sending once the
answer is no.
"""

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


class CampaignWatch:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="campaign_workflow_running")
    async def campaign_workflow_running(self, workflow_id: str) -> bool:
        """Whether the latest run of `workflow_id` is running: False once it was closed
        (terminated, timed out, failed, completed) or is unknown to the namespace."""
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status is WorkflowExecutionStatus.RUNNING
