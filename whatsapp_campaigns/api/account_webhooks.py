"""Meta's account webhooks on `/webhooks/whatsapp` (SPEC §9): changes that concern a WhatsApp
Business Account rather than a message.

- `phone_number_quality_update`: a number's throughput level or messaging limit changed; the
  number's record (and so its rate) follows.
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/phone_number_quality_update
- `message_template_status_update`: Meta approved, paused or disabled a template; the catalog
  follows, and a running campaign of a template that became `PAUSED` or `DISABLED` is paused
  with that reason (its messages would all fail with 132015/132016). The send activity checks
  the template too, so a pause lost here (Temporal unreachable) still happens at the next send.

The entry's `id` is the WhatsApp Business Account: it tells the account. A malformed change is
skipped with a warning: the request still answers 200, so Meta does not retry it forever.
"""

import logging
from dataclasses import dataclass
from typing import Any

from whatsapp_campaigns.domain.models import TemplateStatus, template_stopped_reason
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store import campaigns, catalog, connections
from whatsapp_campaigns.store.db import Database

log = logging.getLogger(__name__)

QUALITY_UPDATE = "phone_number_quality_update"
TEMPLATE_STATUS_UPDATE = "message_template_status_update"
ACCOUNT_FIELDS = frozenset({QUALITY_UPDATE, TEMPLATE_STATUS_UPDATE})

# Meta's template events, in our statuses (others, e.g. FLAGGED, change nothing we act on).
_TEMPLATE_EVENTS = {
    "APPROVED": TemplateStatus.APPROVED,
    "REINSTATED": TemplateStatus.APPROVED,
    "PENDING": TemplateStatus.PENDING,
    "IN_APPEAL": TemplateStatus.PENDING,
    "REJECTED": TemplateStatus.REJECTED,
    "PAUSED": TemplateStatus.PAUSED,
    "DISABLED": TemplateStatus.DISABLED,
    "PENDING_DELETION": TemplateStatus.DISABLED,
    "DELETED": TemplateStatus.DISABLED,
}


@dataclass(frozen=True)
class AccountChange:
    field: str
    waba_id: str
    value: dict[str, Any]


@dataclass(frozen=True)
class TemplateStopped:
    """A template Meta paused or disabled, and the running campaigns that use it."""

    account_id: str
    template: str
    language: str
    status: TemplateStatus
    reason: str
    campaign_ids: list[str]


def account_changes(payload: dict[str, Any]) -> list[AccountChange]:
    """The account-level changes of a webhook body (message statuses are not among them)."""
    changes: list[AccountChange] = []
    entries = payload.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        items = entry.get("changes")
        for change in items if isinstance(items, list) else []:
            if not isinstance(change, dict) or change.get("field") not in ACCOUNT_FIELDS:
                continue
            waba_id, value = entry.get("id"), change.get("value")
            if not isinstance(value, dict) or not isinstance(waba_id, str | int):
                log.warning("account webhook %s skipped: no entry id or value", change["field"])
                continue
            changes.append(AccountChange(str(change["field"]), str(waba_id), value))
    return changes


def apply_account_changes(
    db: Database, settings: Settings, changes: list[AccountChange]
) -> list[TemplateStopped]:
    """Store what the changes say (blocking); returns the templates that stop campaigns."""
    stopped: list[TemplateStopped] = []
    for change in changes:
        account_id = connections.account_for_waba(db, change.waba_id)
        if account_id is None and change.waba_id == settings.whatsapp_business_account_id:
            account_id = settings.default_account  # the settings' connection
        if account_id is None:
            log.warning("account webhook %s for unknown WABA %s", change.field, change.waba_id)
            continue
        if change.field == QUALITY_UPDATE:
            _apply_quality_update(db, account_id, change.value)
        else:
            result = _apply_template_status(db, account_id, change.value)
            if result is not None:
                stopped.append(result)
    return stopped


async def pause_campaigns(client: CampaignsClient, stopped: list[TemplateStopped]) -> None:
    """Pause every running campaign of a stopped template (best effort: the send activity's
    own check pauses one that this misses)."""
    for template in stopped:
        for campaign_id in template.campaign_ids:
            try:
                await client.pause(campaign_id, reason=template.reason, by="whatsapp")
                log.info("campaign %s paused: %s", campaign_id, template.reason)
            except Exception as error:  # one campaign's refusal must not skip the others
                log.warning("campaign %s not paused (%s): %s", campaign_id, template.reason, error)


def _apply_quality_update(db: Database, account_id: str, value: dict[str, Any]) -> None:
    display, event = value.get("display_phone_number"), value.get("event")
    limit = value.get("current_limit")
    if not isinstance(display, str | int) or not isinstance(event, str):
        log.warning("phone_number_quality_update skipped: no display number or event")
        return
    sender = catalog.apply_quality_update(
        db,
        account_id,
        str(display),
        event=event,
        current_limit=limit if isinstance(limit, str) else None,
    )
    if sender is None:
        log.warning("phone_number_quality_update for unknown number %s of %s", display, account_id)
        return
    log.info(
        "sender %s: %s -> throughput %s, %s, %d msg/s",
        sender.phone_number_id,
        event,
        sender.throughput_level,
        sender.messaging_limit,
        sender.rate_per_second,
    )


def _apply_template_status(
    db: Database, account_id: str, value: dict[str, Any]
) -> TemplateStopped | None:
    name, language = value.get("message_template_name"), value.get("message_template_language")
    event = value.get("event")
    if not isinstance(name, str) or not isinstance(language, str) or not isinstance(event, str):
        log.warning("message_template_status_update skipped: no template name, language or event")
        return None
    status = _TEMPLATE_EVENTS.get(event.upper())
    if status is None:
        log.info("template %s (%s): event %s changes nothing here", name, language, event)
        return None
    if not catalog.set_template_status(db, account_id, name, language, status):
        log.info("template %s (%s) of %s not synced yet: %s", name, language, account_id, status)
        return None
    log.info("template %s (%s) of %s is now %s", name, language, account_id, status.value)
    if not status.stops_campaigns:
        return None
    reason = value.get("reason")
    return TemplateStopped(
        account_id=account_id,
        template=name,
        language=language,
        status=status,
        reason=template_stopped_reason(name, language, status, str(reason or "")),
        campaign_ids=campaigns.running_with_template(db, account_id, name, language),
    )
