"""Activities of the campaign lifecycle: read the campaign, preflight, record status changes,
page message ids, count, settle what is left, release credits. All store I/O, no sending."""

from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from whatsapp_campaigns.domain.engine import (
    CampaignSnapshot,
    CountsSnapshot,
    FinishPending,
    MessagePage,
    PreflightResult,
    RescheduleChange,
    StatusChange,
)
from whatsapp_campaigns.domain.models import DEFAULT_SEND_PRIORITY
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import accounts, campaigns, catalog, messages, preflight
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import ActionRefused, NotFound

STATUSES_THAT_SEND = (CampaignStatus.QUEUED, CampaignStatus.SENDING)


class CampaignActivities:
    def __init__(
        self, db: Database, settings: Settings, *, on_sending: Callable[[], None] | None = None
    ) -> None:
        """`on_sending`: called (in the activity's thread) once a campaign is `queued` or
        `sending`, so that the process serves its number at once (SPEC §11)."""
        self._db = db
        self._settings = settings
        self._on_sending = on_sending

    @activity.defn(name="load_campaign")
    def load_campaign(self, campaign_id: str) -> CampaignSnapshot:
        try:
            campaign = campaigns.get_campaign(self._db, campaign_id)
            sender = catalog.get_sender(self._db, campaign.sender_phone_number_id)
            template = catalog.get_template(
                self._db, campaign.account_id, campaign.template_name, campaign.language
            )
        except NotFound as error:
            raise ApplicationError(str(error), type="NotFound", non_retryable=True) from error
        return CampaignSnapshot(
            campaign_id=campaign.id,
            account_id=campaign.account_id,
            status=campaign.status,
            status_reason=campaign.status_reason,
            send_at=campaign.send_at,
            sender_phone_number_id=campaign.sender_phone_number_id,
            sender_rate_per_second=sender.rate_per_second,
            # A missing template fails the preflight; until then it ranks as marketing.
            send_priority=(template.category.send_priority if template else DEFAULT_SEND_PRIORITY),
            send_mode=self._settings.send_mode,
            policy=campaign.policy,
            timeline=campaigns.get_timeline(self._db, campaign_id),
        )

    @activity.defn(name="preflight")
    def preflight(self, campaign_id: str) -> PreflightResult:
        result = preflight.prepare_for_sending(
            self._db, campaign_id, credits_per_message=self._settings.credits_per_message
        )
        activity.logger.info(
            "preflight of campaign %s: %s", campaign_id, "ok" if result.ok else result.reason
        )
        return result

    @activity.defn(name="record_status_change")
    def record_status_change(self, change: StatusChange) -> None:
        entry = change.entry
        if entry.to_status is None:
            raise ApplicationError("a status change needs to_status", non_retryable=True)
        try:
            campaigns.change_status(
                self._db,
                change.campaign_id,
                entry.to_status,
                action=entry.action,
                reason=entry.reason,
                actor=entry.actor,
                by=entry.by,
                at=entry.at,
            )
        except (ActionRefused, ValueError) as error:
            # The workflow is the authority on the status; a store that disagrees is a bug:
            # fail loudly once rather than retry forever.
            raise ApplicationError(str(error), type="ActionRefused", non_retryable=True) from error
        if self._on_sending is not None and entry.to_status in STATUSES_THAT_SEND:
            self._on_sending()
        activity.logger.info(
            "campaign %s: %s -> %s (%s)",
            change.campaign_id,
            entry.from_status,
            entry.to_status,
            entry.reason or entry.action,
        )

    @activity.defn(name="record_timeline")
    def record_timeline(self, change: StatusChange) -> None:
        campaigns.record_timeline(self._db, change.campaign_id, change.entry)

    @activity.defn(name="record_reschedule")
    def record_reschedule(self, change: RescheduleChange) -> None:
        campaign = campaigns.get_campaign(self._db, change.campaign_id)
        campaigns.set_schedule(self._db, change.campaign_id, change.send_at, campaign.timezone)
        campaigns.record_timeline(self._db, change.campaign_id, change.entry)

    @activity.defn(name="page_queued_messages")
    def page_queued_messages(self, page: MessagePage) -> list[int]:
        return messages.page_message_ids(
            self._db,
            page.campaign_id,
            after_id=page.after_id,
            limit=page.limit,
            partition=page.partition,
            partitions=page.partitions,
        )

    @activity.defn(name="count_messages")
    def count_messages(self, campaign_id: str) -> CountsSnapshot:
        campaigns_on_sender, weights_on_sender = campaigns.sharing_sender(self._db, campaign_id)
        return CountsSnapshot(
            counts=messages.count_by_status(self._db, campaign_id),
            errors=messages.error_summary(self._db, campaign_id),
            campaigns_on_sender=campaigns_on_sender,
            weights_on_sender=weights_on_sender,
        )

    @activity.defn(name="finish_pending")
    def finish_pending(self, request: FinishPending) -> int:
        statuses = [MessageStatus.QUEUED, MessageStatus.RETRYING]
        if request.include_sending:
            statuses.append(MessageStatus.SENDING)
        count = messages.finish_pending(
            self._db,
            request.campaign_id,
            request.to_status,
            reason=request.reason,
            statuses=statuses,
        )
        if count:
            activity.logger.info(
                "campaign %s: %d messages -> %s (%s)",
                request.campaign_id,
                count,
                request.to_status.value,
                request.reason,
            )
        return count

    @activity.defn(name="release_credits")
    def release_credits(self, campaign_id: str) -> int:
        return accounts.release_credits(
            self._db, campaign_id, credits_per_message=self._settings.credits_per_message
        )
