"""`CampaignsClient`: the typed, async client that backend services, admin scripts, the CLI and
the REST API use to create and steer campaigns (SPEC §6).

Everything a person decides goes through the rules of `domain/transitions.py`: a refused
action raises `CampaignRefused` with the rule's reason. Running campaigns are steered through
the workflow's updates, so the caller learns at once whether the workflow accepted.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, Literal, ParamSpec, TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from whatsapp_campaigns.domain.commands import (
    CancelRequest,
    Command,
    PauseRequest,
    RescheduleRequest,
    ResumeRequest,
)
from whatsapp_campaigns.domain.engine import CampaignInput
from whatsapp_campaigns.domain.models import (
    ActorKind,
    AudienceImportResult,
    Campaign,
    CampaignDraft,
    Progress,
)
from whatsapp_campaigns.domain.phones import InvalidPhoneNumber, normalize_phone
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.domain.templates import merge_values
from whatsapp_campaigns.domain.transitions import CampaignAction, check_action
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.errors import (
    CampaignNotFound,
    CampaignRefused,
    CampaignUnavailable,
)
from whatsapp_campaigns.store import audiences, campaigns, catalog, messages, preflight
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import ActionRefused, InvalidInput, NotFound
from whatsapp_campaigns.store.progress import progress_from_store, with_live_counts
from whatsapp_campaigns.temporal_client import connect
from whatsapp_campaigns.whatsapp.components import template_components
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.provider import ProviderError, TemplateSend
from whatsapp_campaigns.workflows.search_attributes import (
    CAMPAIGN_STATUS,
    SCHEDULED_AT,
    SENDER_PHONE_NUMBER_ID,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# A send time this far in the past is a mistake, not "now".
PAST_TOLERANCE = timedelta(minutes=1)

_UPDATES: dict[CampaignAction, str] = {
    CampaignAction.PAUSE: "request_pause",
    CampaignAction.RESUME: "request_resume",
    CampaignAction.CANCEL: "request_cancel",
    CampaignAction.RESCHEDULE: "request_reschedule",
}

# How long an operator update keeps being retried while the server refuses it for a moment.
UPDATE_RETRY_FOR = 10.0  # seconds: a continue-as-new or a retried workflow task takes less
UPDATE_RETRY_DELAY = 0.25  # first wait between tries; doubles up to UPDATE_RETRY_DELAY_MAX
UPDATE_RETRY_DELAY_MAX = 2.0

# Update refusals: which are retried and which are final.
#
# Transient (retried with the same update id, so the workflow applies it at most once):
# - the run is ending, e.g. continuing as new ("workflow is closing"; "already completed" or
#   NOT_FOUND while the workflow chain still runs: the next run takes the update);
# - a workflow task failed and the server waits for its retry ("Workflow Task in failed state",
#   FAILED_PRECONDITION: a worker died mid-task, or was restarted with a fix);
# - the server is busy or was not reached (RESOURCE_EXHAUSTED, UNAVAILABLE, ABORTED,
#   DEADLINE_EXCEEDED, and the SDK's timeout of the update call).
# Final (raised at once):
# - the workflow refused the command: its validator or handler said why (CampaignRefused);
# - the campaign's workflow is not running (CampaignRefused "... is not running");
# - every other RPC error (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED, other
#   FAILED_PRECONDITION such as the server's limit of updates per workflow): the same request
#   would be refused again.
# Still refused after UPDATE_RETRY_FOR: CampaignUnavailable, with the last refusal.
_TRANSIENT_UPDATE_STATUSES = frozenset(
    {
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.ABORTED,
        RPCStatusCode.DEADLINE_EXCEEDED,
    }
)


def _run_is_closing(error: RPCError) -> bool:
    """True for the refusals the server gives while a run is ending (e.g. continue-as-new):
    "workflow is closing" (RESOURCE_EXHAUSTED) and "already completed" (NOT_FOUND)."""
    return "workflow is closing" in error.message or "already completed" in error.message


def _is_transient_refusal(error: RPCError) -> bool:
    if error.status in _TRANSIENT_UPDATE_STATUSES:
        return True
    return (
        error.status is RPCStatusCode.FAILED_PRECONDITION
        and "workflow task in failed state" in error.message.lower()
    )


def workflow_id(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


class CampaignsClient:
    def __init__(
        self,
        client: Client,
        db: Database,
        settings: Settings,
        *,
        providers: AccountProviders | None = None,
    ) -> None:
        """`providers`: how test sends reach WhatsApp (default: each account's connection)."""
        self.client = client
        self.db = db
        self.settings = settings
        self._providers = providers

    @classmethod
    async def connect(cls, settings: Settings, *, lazy: bool = False) -> "CampaignsClient":
        """`lazy`: reach Temporal at its first use, not now (the store's answers need none)."""
        return cls(await connect(settings, lazy=lazy), Database(settings.database_url), settings)

    async def close(self) -> None:
        if self._providers is not None:
            await self._providers.aclose()
        self.db.dispose()

    # ------------------------------------------------------------------------ content

    async def create_draft(
        self, draft: CampaignDraft, *, account_id: str | None = None, by: str | None = None
    ) -> Campaign:
        account = account_id or self.settings.default_account
        return await self._store(campaigns.create_draft, self.db, account, draft, by=by)

    async def edit_draft(
        self, campaign_id: str, draft: CampaignDraft, *, by: str | None = None
    ) -> Campaign:
        return await self._store(campaigns.edit_draft, self.db, campaign_id, draft, by=by)

    async def import_audience(
        self,
        name: str,
        source: str | BinaryIO,
        *,
        account_id: str | None = None,
        phone_column: str = "phone",
        region: str | None = None,
    ) -> AudienceImportResult:
        """Import a CSV audience; raises AudienceImportError for a file that cannot be read."""
        return await asyncio.to_thread(
            audiences.import_audience_csv,
            self.db,
            account_id or self.settings.default_account,
            name,
            source,
            phone_column=phone_column,
            default_region=region or self.settings.default_region,
        )

    async def get(self, campaign_id: str) -> Campaign:
        return await self._store(campaigns.get_campaign, self.db, campaign_id)

    async def list(
        self,
        *,
        account_id: str | None = None,
        statuses: Sequence[CampaignStatus] | None = None,
        sender: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        search: str | None = None,
        sort: Literal["created", "scheduled", "name", "status"] = "created",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Campaign], int]:
        return await self._store(
            campaigns.list_campaigns,
            self.db,
            account_id or self.settings.default_account,
            statuses=statuses,
            sender=sender,
            since=since,
            until=until,
            search=search,
            sort=sort,
            descending=descending,
            limit=limit,
            offset=offset,
        )

    async def duplicate(self, campaign_id: str, *, by: str | None = None) -> Campaign:
        return await self._store(campaigns.duplicate_campaign, self.db, campaign_id, by=by)

    # ---------------------------------------------------------------------- launching

    async def schedule(
        self,
        campaign_id: str,
        send_at: datetime | None = None,
        *,
        timezone: str | None = None,
        by: str | None = None,
        actor: ActorKind = ActorKind.USER,
    ) -> Campaign:
        """Schedule a draft for `send_at` (aware; None = now) and start its workflow.

        The preflight runs first, so a campaign that could not be sent is refused now with
        every reason, not at its send time. Scheduling a campaign that is already scheduled
        only makes sure its workflow runs (safe to repeat).
        """
        campaign = await self.get(campaign_id)
        if campaign.status is CampaignStatus.SCHEDULED:
            await self._start_workflow(campaign)
            return campaign
        now = datetime.now(UTC)
        when = send_at or now
        if when.tzinfo is None:
            raise CampaignRefused("the send time needs a timezone or UTC offset")
        if when < now - PAST_TOLERANCE:
            raise CampaignRefused(f"the send time {when.isoformat()} has passed")
        action = CampaignAction.LAUNCH if send_at is None else CampaignAction.SCHEDULE
        self._check(action, campaign)
        report = await asyncio.to_thread(
            preflight.check_campaign,
            self.db,
            campaign_id,
            credits_per_message=self.settings.credits_per_message,
        )
        if not report.ok:
            values = report.values
            raise CampaignRefused(
                "cannot schedule: " + "; ".join(report.problems),
                invalid_values=values.as_json() if values is not None and not values.ok else None,
            )
        await self._store(
            campaigns.set_schedule, self.db, campaign_id, when, timezone or campaign.timezone
        )
        campaign = await self._store(
            campaigns.change_status,
            self.db,
            campaign_id,
            CampaignStatus.SCHEDULED,
            action=action.value,
            reason=f"{report.recipients} recipients, ~{report.estimated_credits} credits"
            + (
                f", {report.skipped_invalid} left out for invalid template values"
                if report.skipped_invalid
                else ""
            ),
            actor=actor,
            by=by,
        )
        await self._start_workflow(campaign)
        return campaign

    async def preflight(self, campaign_id: str) -> preflight.PreflightReport:
        """The scheduling checks without scheduling: every problem, and how the recipients'
        template values fare against SPEC §10's rules."""
        await self.get(campaign_id)
        return await asyncio.to_thread(
            preflight.check_campaign,
            self.db,
            campaign_id,
            credits_per_message=self.settings.credits_per_message,
        )

    async def launch(self, campaign_id: str, *, by: str | None = None) -> Campaign:
        """Schedule for now."""
        return await self.schedule(campaign_id, None, by=by)

    async def retry_failed(self, campaign_id: str, *, by: str | None = None) -> Campaign:
        """A new run over the failed messages of a finished campaign (SPEC §4 rule 11)."""
        campaign = await self.get(campaign_id)
        self._check(CampaignAction.RETRY_FAILED, campaign)
        count = await asyncio.to_thread(messages.requeue_failed, self.db, campaign_id)
        if count == 0:
            raise CampaignRefused("cannot retry failed: no failed message that a retry could fix")
        campaign = await self._store(
            campaigns.change_status,
            self.db,
            campaign_id,
            CampaignStatus.QUEUED,
            action=CampaignAction.RETRY_FAILED.value,
            reason=f"{count} failed messages queued again",
            actor=ActorKind.USER,
            by=by,
        )
        await self._start_workflow(campaign)
        return campaign

    async def _start_workflow(self, campaign: Campaign) -> None:
        attributes: list[SearchAttributePair[Any]] = [
            SearchAttributePair(CAMPAIGN_STATUS, campaign.status.value),
            SearchAttributePair(SENDER_PHONE_NUMBER_ID, campaign.sender_phone_number_id),
        ]
        if campaign.send_at is not None:
            attributes.append(SearchAttributePair(SCHEDULED_AT, campaign.send_at))
        await self.client.start_workflow(
            "CampaignWorkflow",
            CampaignInput(campaign_id=campaign.id),
            id=workflow_id(campaign.id),
            task_queue=self.settings.task_queue,
            # Starting twice is harmless; a finished campaign's id may run again (retry failed).
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(attributes),
        )

    # ------------------------------------------------------------------------ steering

    async def pause(
        self, campaign_id: str, *, reason: str | None = None, by: str | None = None
    ) -> Progress:
        return await self._steer(
            campaign_id, CampaignAction.PAUSE, PauseRequest(reason=reason, by=by)
        )

    async def resume(self, campaign_id: str, *, by: str | None = None) -> Progress:
        """Refused while WhatsApp has the campaign's template paused or disabled (SPEC §9):
        every message would fail; resume once Meta approves it again."""
        campaign = await self.get(campaign_id)
        template = await self._store(
            catalog.get_template,
            self.db,
            campaign.account_id,
            campaign.template_name,
            campaign.language,
        )
        if template is not None and template.status.stops_campaigns:
            raise CampaignRefused(
                f"template {template.name} ({template.language}) is {template.status.value} "
                "by WhatsApp: resume once it is APPROVED again"
            )
        return await self._steer(campaign_id, CampaignAction.RESUME, ResumeRequest(by=by))

    async def cancel(
        self, campaign_id: str, *, reason: str | None = None, by: str | None = None
    ) -> Progress:
        return await self._steer(
            campaign_id, CampaignAction.CANCEL, CancelRequest(reason=reason, by=by)
        )

    async def reschedule(
        self, campaign_id: str, send_at: datetime, *, by: str | None = None
    ) -> Progress:
        if send_at.tzinfo is None:
            raise CampaignRefused("the send time needs a timezone or UTC offset")
        return await self._steer(
            campaign_id, CampaignAction.RESCHEDULE, RescheduleRequest(send_at=send_at, by=by)
        )

    async def _steer(self, campaign_id: str, action: CampaignAction, request: Command) -> Progress:
        """Send the update to the campaign's workflow; refusals come back as CampaignRefused."""
        campaign = await self.get(campaign_id)
        self._check(action, campaign)  # a clear answer for drafts and finished campaigns
        handle = self._handle(campaign_id)
        payload = request.model_dump(mode="json")
        update_id = str(uuid.uuid4())  # the same on every try: the server applies it once
        not_running = CampaignRefused(
            f"cannot {action.value}: campaign {campaign_id} is not running"
        )
        give_up_at = time.monotonic() + UPDATE_RETRY_FOR
        delay = UPDATE_RETRY_DELAY
        while True:
            try:
                progress: Progress = await handle.execute_update(
                    _UPDATES[action], payload, id=update_id, result_type=Progress
                )
                return progress
            except WorkflowUpdateFailedError as error:
                raise CampaignRefused(str(error.cause or error)) from error
            except WorkflowUpdateRPCTimeoutOrCancelledError as error:
                refusal: Exception = error
            except RPCError as error:
                refusal = error
                if error.status is RPCStatusCode.NOT_FOUND or _run_is_closing(error):
                    # The run ended; when it continued as new, the next run takes the update.
                    if not await self._still_running(campaign_id):
                        raise not_running from error
                elif not _is_transient_refusal(error):
                    raise
            if time.monotonic() + delay > give_up_at:
                raise CampaignUnavailable(
                    f"cannot {action.value} campaign {campaign_id} now: its workflow did not "
                    f"take the command within {UPDATE_RETRY_FOR:.0f} s "
                    f"({_describe(refusal)}); nothing was changed, try again"
                ) from refusal
            log.info(
                "%s of campaign %s refused for now (%s); retrying in %.2f s",
                action.value,
                campaign_id,
                _describe(refusal),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, UPDATE_RETRY_DELAY_MAX)

    async def progress(self, campaign_id: str) -> Progress:
        """While the workflow runs: its `progress` query (status, throttling, timeline) with
        the store's live message counts (fresh also while it is throttled or paused, without
        waking it); the store's view otherwise."""
        campaign = await self.get(campaign_id)
        if campaign.status in (CampaignStatus.DRAFT,) or campaign.status.is_terminal:
            return await self._store(progress_from_store, self.db, campaign_id)
        try:
            progress: Progress = await self._handle(campaign_id).query(
                "progress", result_type=Progress
            )
        except RPCError:
            return await self._store(progress_from_store, self.db, campaign_id)
        return await self._store(with_live_counts, self.db, progress)

    async def _still_running(self, campaign_id: str) -> bool:
        """Whether the campaign's workflow chain is still running."""
        try:
            description = await self._handle(campaign_id).describe()
        except RPCError:
            return False
        # CONTINUED_AS_NEW: caught between two runs of the chain; the next one is coming.
        return description.status in (
            WorkflowExecutionStatus.RUNNING,
            WorkflowExecutionStatus.CONTINUED_AS_NEW,
        )

    def _handle(self, campaign_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id(campaign_id))

    # ----------------------------------------------------------------------- test-send

    async def test_send(
        self, campaign_id: str, to: str, *, variables: dict[str, str] | None = None
    ) -> str:
        """Send the campaign's template to one number now, outside the campaign; returns
        WhatsApp's message id. Variables default to the audience's first recipient's, and
        the campaign's fixed values fill what they leave out."""
        campaign = await self.get(campaign_id)
        self._check(CampaignAction.TEST_SEND, campaign)
        try:
            phone = normalize_phone(to, self.settings.default_region)
        except InvalidPhoneNumber as error:
            raise CampaignRefused(f"cannot test-send to {to!r}: {error}") from error
        template = await asyncio.to_thread(
            catalog.get_template,
            self.db,
            campaign.account_id,
            campaign.template_name,
            campaign.language,
        )
        if template is None:
            raise CampaignRefused(f"template {campaign.template_name!r} does not exist")
        if variables is None and campaign.audience_id is not None:
            sample = await asyncio.to_thread(
                audiences.sample_recipients, self.db, campaign.audience_id, 1
            )
            variables = sample[0].variables if sample else {}
        try:
            values = merge_values(variables or {}, campaign.variables)
            components = template_components(template, values)
        except ValueError as error:
            raise CampaignRefused(f"cannot test-send: {error}") from error
        if self._providers is None:
            self._providers = AccountProviders(self.settings, self.db)
        try:
            provider = await self._providers.provider(campaign.account_id)
            return await provider.send_template(
                TemplateSend(
                    sender_phone_number_id=campaign.sender_phone_number_id,
                    to=phone,
                    template=campaign.template_name,
                    language=campaign.language,
                    components=components,
                    biz_opaque_callback_data=f"test-{campaign.id}",
                )
            )
        except ProviderError as error:
            raise CampaignRefused(f"WhatsApp refused the test send: {error.title}") from error

    # ----------------------------------------------------------------------- helpers

    def _check(self, action: CampaignAction, campaign: Campaign) -> None:
        refusal = check_action(
            action,
            campaign.status,
            campaign.policy,
            now=datetime.now(UTC),
            send_at=campaign.send_at,
        )
        if refusal is not None:
            raise CampaignRefused(refusal.reason)

    async def _store(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store function off the event loop, with store errors as client errors."""
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except NotFound as error:
            raise CampaignNotFound(str(error)) from error
        except (ActionRefused, InvalidInput) as error:
            raise CampaignRefused(str(error)) from error


def _describe(error: Exception) -> str:
    if isinstance(error, RPCError):
        return f"{error.status.name}: {error.message}"
    return str(error) or type(error).__name__
