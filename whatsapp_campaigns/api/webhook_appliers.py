"""What a batch of received webhook payloads does to the store, by change `field`.

The inbox applier (`webhook_ingest`) hands every change of a claimed batch to the applier
registered for its `field` in `CHANGE_APPLIERS`, all in one transaction; a field without an
applier is logged and dropped. To handle another webhook field (an account's
`phone_number_quality_update`, `message_template_status_update`...), add a function of the
`ChangeApplier` shape to the registry.
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from whatsapp_campaigns import metrics
from whatsapp_campaigns.api.account_webhooks import ACCOUNT_FIELDS
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import status_updates
from whatsapp_campaigns.store.status_updates import AppliedCounts, InboundReply
from whatsapp_campaigns.whatsapp.webhook_payloads import (
    MESSAGES_FIELD,
    ParsedMessages,
    changes,
    parse_messages_value,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One `entry[].changes[]` item of a received payload."""

    value: dict[str, Any]
    received_at: datetime


ChangeApplier = Callable[[Session, Settings, Sequence[Change]], None]


def apply_messages(session: Session, settings: Settings, batch: Sequence[Change]) -> None:
    """Statuses first, set-based over the whole batch and in rank order (so out-of-order and
    duplicated deliveries end at the furthest status), then replies (a reply implies its
    message was read), one call per account."""
    parsed = ParsedMessages()
    for change in batch:
        before = len(parsed.statuses)
        parse_messages_value(change.value, received_at=change.received_at, into=parsed)
        for update in parsed.statuses[before:]:  # WhatsApp's timestamp -> its arrival here
            metrics.record_webhook_lag((change.received_at - update.at).total_seconds())
    if parsed.skipped:
        log.info("%d webhook items not handled (unknown statuses, notices)", parsed.skipped)
    status_updates.apply_statuses(session, parsed.statuses)
    _apply_replies(session, settings, parsed.replies)


def _apply_replies(
    session: Session, settings: Settings, replies: dict[str | None, list[InboundReply]]
) -> None:
    if not replies:
        return
    accounts = status_updates.sender_accounts(
        session, replies.keys(), default_account=settings.default_account
    )
    by_account: dict[str | None, list[InboundReply]] = defaultdict(list)
    for sender, sender_replies in replies.items():
        by_account[accounts[sender]].extend(sender_replies)
    counts = AppliedCounts()
    for account_id, account_replies in by_account.items():
        if account_id is None:
            log.warning("%d inbound replies for unknown sender numbers", len(account_replies))
            continue
        counts += status_updates.apply_replies(session, account_replies, account_id=account_id)
    log.info("inbound replies applied: %s", counts)


def applied_at_receipt(session: Session, settings: Settings, batch: Sequence[Change]) -> None:
    """Account webhooks are applied when they are received (`api.account_webhooks`): their
    copy in the inbox has nothing left to do."""


# The extension point: webhook `field` -> what applies its changes.
CHANGE_APPLIERS: dict[str, ChangeApplier] = {
    MESSAGES_FIELD: apply_messages,
    **{name: applied_at_receipt for name in ACCOUNT_FIELDS},
}


def apply_payloads(
    session: Session, settings: Settings, payloads: Iterable[tuple[Any, datetime]]
) -> None:
    """Apply decoded payloads (with their time of receipt): changes grouped by field, each
    group in one call of its applier, fields in the order they first appear."""
    by_field: dict[str | None, list[Change]] = defaultdict(list)
    for payload, received_at in payloads:
        for name, value in changes(payload):
            by_field[name].append(Change(value, received_at))
    unhandled: Counter[str] = Counter()
    for name, batch in by_field.items():
        applier = CHANGE_APPLIERS.get(name) if name is not None else None
        if applier is None:
            unhandled[str(name)] += len(batch)
            continue
        applier(session, settings, batch)
    if unhandled:
        log.info("webhook changes without an applier dropped: %s", dict(unhandled))
