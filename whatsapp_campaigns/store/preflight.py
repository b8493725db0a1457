"""Preflight checks (SPEC §4 rule 3): run when a campaign is scheduled, so the user learns
early, and again at execution, where credits are reserved and the messages created.

Any problem means nothing is sent: a campaign never goes out half-prepared.
"""

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from whatsapp_campaigns.domain.engine import PreflightResult
from whatsapp_campaigns.domain.models import TemplateStatus
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.store import accounts, catalog, messages
from whatsapp_campaigns.store.campaigns import template_refusal
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import InsufficientCredits, NotFound
from whatsapp_campaigns.store.models import AudienceRow, CampaignRow, RecipientRow
from whatsapp_campaigns.store.recipient_checks import ValuesReport, check_audience_values


@dataclass
class PreflightReport:
    problems: list[str] = field(default_factory=list)
    recipients: int = 0  # messages that would be sent (valid, not suppressed or opted out)
    estimated_credits: int = 0
    # Every recipient's template values (SPEC §10); None when they could not be checked.
    values: ValuesReport | None = None
    skipped_invalid: int = 0  # recipients left out by policy skip_invalid

    @property
    def ok(self) -> bool:
        return not self.problems


def check_campaign(
    db: Database, campaign_id: str, *, credits_per_message: int, keep_reasons: bool = False
) -> PreflightReport:
    """Every reason the campaign could not be sent now; empty `problems` when it can.

    With policy `skip_invalid`, recipients whose template values break a rule are left out
    (counted in `skipped_invalid`) instead of refusing the campaign."""
    report = PreflightReport()
    with db.session() as session:
        campaign = session.get(CampaignRow, campaign_id)
        if campaign is None:
            raise NotFound(f"campaign {campaign_id} not found")
        audience = session.get(AudienceRow, campaign.audience_id) if campaign.audience_id else None
        report.recipients = _sendable_count(session, campaign, audience)
        account_id, sender_id = campaign.account_id, campaign.sender_phone_number_id
        template_name, language = campaign.template_name, campaign.language
        variable_names = list(audience.variable_names) if audience else []
        fixed = dict(campaign.variables or {})
        skip_invalid = CampaignPolicy.model_validate(campaign.policy).skip_invalid

    if audience is None:
        report.problems.append("no audience: import one and attach it to the campaign")
    elif report.recipients == 0:
        report.problems.append(
            "no valid recipient to send to (all invalid, suppressed or opted out)"
        )

    template = catalog.get_template(db, account_id, template_name, language)
    if template is None:
        report.problems.append(
            f"template {template_name!r} ({language}) does not exist: sync templates first"
        )
    elif template.status is not TemplateStatus.APPROVED:
        report.problems.append(
            f"template {template_name!r} is {template.status.value}, not APPROVED by WhatsApp"
        )
    elif (refusal := template_refusal(template, fixed)) is not None:
        report.problems.append(refusal)
    elif audience is not None:
        absent = [
            v.name
            for v in template.needs()
            if v.required and v.name not in variable_names and not fixed.get(v.name)
        ]
        if absent:
            report.problems.append(
                f"template variable(s) {', '.join(absent)} have no audience column and no "
                "fixed value (--var)"
            )
        values = check_audience_values(
            db, account_id, audience.id, template, fixed, keep_reasons=keep_reasons
        )
        report.values = values
        if not values.ok and skip_invalid:
            report.skipped_invalid = values.invalid
            report.recipients -= values.invalid
        elif not values.ok and not absent:
            report.problems.append(values.summary() + " (or use --skip-invalid)")
        if report.recipients == 0 and report.skipped_invalid:
            report.problems.append("no recipient with valid template values to send to")

    try:
        sender = catalog.get_sender(db, sender_id)
        if sender.account_id != account_id:
            report.problems.append(f"sender {sender_id} belongs to another account")
        elif sender.removed_at is not None:
            report.problems.append(f"sender number {sender_id} was removed (`senders remove`)")
    except NotFound:
        report.problems.append(f"sender number {sender_id} is not configured")

    report.estimated_credits = report.recipients * credits_per_message
    balance = accounts.get_balance(db, account_id)
    if balance < report.estimated_credits:
        report.problems.append(
            f"not enough credits: {report.estimated_credits} needed, {balance} available"
        )
    return report


def prepare_for_sending(
    db: Database, campaign_id: str, *, credits_per_message: int
) -> PreflightResult:
    """The execution preflight: check, reserve the credits, create the messages.

    Idempotent: a repeated call (activity retry, restarted workflow, retry failed) reserves
    nothing twice and creates no message twice.
    """
    report = check_campaign(
        db, campaign_id, credits_per_message=credits_per_message, keep_reasons=True
    )
    counts = messages.count_by_status(db, campaign_id)
    if counts:  # messages exist already: a restarted run, or retry failed
        report.recipients = counts.get(MessageStatus.QUEUED, 0)
        report.estimated_credits = report.recipients * credits_per_message
        report.problems = [p for p in report.problems if not p.startswith("not enough credits")]
        if report.recipients == 0 and not _has_pending(counts):
            report.problems.append("no queued message left to send")
    if not report.ok:
        return PreflightResult(ok=False, reason="; ".join(report.problems))
    try:
        accounts.reserve_credits(db, campaign_id, report.estimated_credits)
    except InsufficientCredits as error:
        return PreflightResult(ok=False, reason=str(error))
    invalid = report.values.reasons if report.values is not None else {}
    created = messages.materialize_messages(db, campaign_id, invalid=invalid)
    return PreflightResult(
        ok=True,
        total=created.total,
        queued=created.queued,
        suppressed=created.suppressed,
        reserved_credits=report.estimated_credits,
    )


def _has_pending(counts: dict[MessageStatus, int]) -> bool:
    return any(counts.get(s, 0) for s in (MessageStatus.SENDING, MessageStatus.RETRYING))


def _sendable_count(session: Session, campaign: CampaignRow, audience: AudienceRow | None) -> int:
    if audience is None:
        return 0
    count = session.scalar(
        select(func.count())
        .select_from(RecipientRow)
        .where(
            RecipientRow.audience_id == audience.id,
            ~messages.recipient_is_suppressed(campaign.account_id),
        )
    )
    return int(count or 0)
