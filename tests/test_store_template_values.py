"""Every recipient's template values are checked before anything is sent (SPEC §10): at
creation (unknown --var names, kinds we do not send) and in the preflight (scheduling and
execution), reported by rule with the first CSV rows; `skip_invalid` leaves them out."""

import io
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from tests.engine_harness import ordinary_numbers
from whatsapp_campaigns.domain.models import CampaignDraft, Template
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.domain.templates import Rule
from whatsapp_campaigns.store import campaigns, catalog, messages, preflight, reports
from whatsapp_campaigns.store.audiences import import_audience_csv
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import InvalidInput
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.store.models import MessageRow
from whatsapp_campaigns.store.status_updates import InboundReply, apply_inbound_replies
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES

IMAGE = "https://cdn.example.com/spring.jpg"


@pytest.fixture
def store(db: Database) -> Database:
    seed_sandbox(db)
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)
    return db


def audience(db: Database, csv_text: str) -> str:
    source = io.BytesIO(csv_text.encode())
    return import_audience_csv(db, SANDBOX_ACCOUNT_ID, "audience", source).audience.id


def campaign(
    db: Database,
    template: str,
    audience_id: str | None,
    variables: Mapping[str, str] | None = None,
    *,
    skip_invalid: bool = False,
) -> str:
    draft = CampaignDraft(
        name="spring",
        template_name=template,
        sender_phone_number_id=SANDBOX_SENDER.phone_number_id,
        audience_id=audience_id,
        variables=dict(variables or {}),
        policy=CampaignPolicy(skip_invalid=skip_invalid),
    )
    return campaigns.create_draft(db, SANDBOX_ACCOUNT_ID, draft).id


def check(db: Database, campaign_id: str) -> preflight.PreflightReport:
    return preflight.check_campaign(db, campaign_id, credits_per_message=1)


# The bad input, one row each (the header is row 1).
BAD_PROMO_CSV = (
    "phone,name,header_media,button_0\n"
    f"+12025550110,Ana,{IMAGE},ana-1\n"  # row 2: fine
    f'+12025550111,"Bo\nBo",{IMAGE},bo-2\n'  # row 3: a body parameter with a newline
    "+12025550112,Cy,http://cdn.example.com/a.jpg,cy-3\n"  # row 4: http:// media link
    "+12025550113,Di,https//cdn.example.com/a.jpg,di-4\n"  # row 5: malformed media link
    f"+12025550114,Ed,{IMAGE},ed 5\n"  # row 6: a URL suffix with a space
    f"+12025550115,,{IMAGE},fa-6\n"  # row 7: no name
)


def test_each_bad_value_is_reported_by_rule_and_row_before_anything_is_sent(
    store: Database,
) -> None:
    campaign_id = campaign(store, "promo_media", audience(store, BAD_PROMO_CSV))

    report = check(store, campaign_id)

    assert not report.ok
    values = report.values
    assert values is not None
    assert (values.checked, values.invalid) == (6, 5)
    assert dict(values.by_rule) == {
        Rule.TEXT_FORMAT: 1,
        Rule.MEDIA_LINK: 2,
        Rule.URL_SUFFIX: 1,
        Rule.MISSING: 1,
    }
    assert [
        (r.row_number, [(p.variable, p.rule) for p in r.problems]) for r in values.first_rows
    ] == [
        (3, [("name", Rule.TEXT_FORMAT)]),
        (4, [("header_media", Rule.MEDIA_LINK)]),
        (5, [("header_media", Rule.MEDIA_LINK)]),
        (6, [("button_0", Rule.URL_SUFFIX)]),
        (7, [("name", Rule.MISSING)]),
    ]
    assert any("5 of 6 recipients have invalid template values" in p for p in report.problems)
    assert messages.count_by_status(store, campaign_id) == {}  # nothing prepared, nothing sent


def test_a_header_text_variable_over_60_characters_is_reported(store: Database) -> None:
    csv_text = f"phone,header_1,1,2\n+12025550110,{'x' * 61},Ana,May 3\n"
    campaign_id = campaign(store, "appointment_reminder", audience(store, csv_text))

    values = check(store, campaign_id).values

    assert values is not None and dict(values.by_rule) == {Rule.TOO_LONG: 1}
    assert values.first_rows[0].row_number == 2


def test_a_column_missing_for_a_required_variable_is_named(store: Database) -> None:
    csv_text = "phone,name\n+12025550110,Ana\n"
    campaign_id = campaign(store, "promo_media", audience(store, csv_text))

    report = check(store, campaign_id)

    assert any(
        "header_media, button_0 have no audience column and no fixed value" in p
        for p in report.problems
    )


def test_a_fixed_value_fills_the_column_the_audience_lacks(store: Database) -> None:
    csv_text = "phone,name,button_0\n+12025550110,Ana,ana-1\n"
    campaign_id = campaign(store, "promo_media", audience(store, csv_text), {"header_media": IMAGE})

    assert check(store, campaign_id).ok


def test_an_unknown_var_name_is_refused_at_creation_naming_the_known_ones(
    store: Database,
) -> None:
    with pytest.raises(InvalidInput, match=r"no variable 'nmae'.*header_media, name, button_0"):
        campaign(store, "promo_media", None, {"nmae": "Ana"})


def test_a_template_of_a_kind_we_do_not_send_is_refused_at_creation(store: Database) -> None:
    carousel = Template(
        name="cards",
        components=[{"type": "BODY", "text": "Look"}, {"type": "CAROUSEL", "cards": []}],
    )
    catalog.upsert_templates(store, SANDBOX_ACCOUNT_ID, [carousel])

    with pytest.raises(InvalidInput, match="uses carousel, which campaigns cannot send yet"):
        campaign(store, "cards", None)


def test_skip_invalid_leaves_the_invalid_recipients_out_of_the_count(store: Database) -> None:
    campaign_id = campaign(store, "promo_media", audience(store, BAD_PROMO_CSV), skip_invalid=True)

    report = check(store, campaign_id)

    assert report.ok, report.problems
    assert (report.recipients, report.skipped_invalid, report.estimated_credits) == (1, 5, 1)


def test_skip_invalid_prepares_the_invalid_messages_as_failed_with_the_reason(
    store: Database,
) -> None:
    campaign_id = campaign(store, "promo_media", audience(store, BAD_PROMO_CSV), skip_invalid=True)

    prepared = preflight.prepare_for_sending(store, campaign_id, credits_per_message=1)

    assert (prepared.ok, prepared.total, prepared.queued) == (True, 6, 1)
    titles = {r.phone_e164: r.error_title for r in reports.iter_report_rows(store, campaign_id)}
    assert titles["+12025550110"] is None
    assert titles["+12025550114"] == "invalid template value: button_0 (" + (
        Rule.URL_SUFFIX.meaning + ")"
    )


def test_a_100k_row_audience_is_reported_by_rule_with_its_first_rows(store: Database) -> None:
    lines = ["phone,name,button_0"]
    for i, phone in enumerate(ordinary_numbers(100_000)):
        suffix = "bad suffix" if i % 1000 == 7 else f"c{i}"  # rows 9, 1009, 2009...
        lines.append(f"{phone},C{i},{suffix}")
    campaign_id = campaign(
        store, "promo_media", audience(store, "\n".join(lines)), {"header_media": IMAGE}
    )

    values = check(store, campaign_id).values

    assert values is not None
    assert (values.checked, values.invalid) == (100_000, 100)
    assert dict(values.by_rule) == {Rule.URL_SUFFIX: 100}
    assert [r.row_number for r in values.first_rows[:2]] == [9, 1009]


# -------------------------------------------------------------------- quick-reply taps


def test_a_quick_reply_tap_makes_the_message_responded_and_keeps_its_payload(
    store: Database,
) -> None:
    csv_text = "phone,name,button_0\n+12025550110,Ana,ana-1\n"
    campaign_id = campaign(store, "promo_media", audience(store, csv_text), {"header_media": IMAGE})
    preflight.prepare_for_sending(store, campaign_id, credits_per_message=1)
    (row,) = reports.iter_report_rows(store, campaign_id)
    with store.session() as session:  # as if WhatsApp had accepted it
        session.execute(
            update(MessageRow)
            .where(MessageRow.id == row.message_id)
            .values(status=MessageStatus.SENT.value, provider_message_id="wamid.tap")
        )
    tap = InboundReply(
        from_phone_e164="+12025550110",
        text="Not interested",
        at=datetime.now(UTC),
        context_provider_message_id="wamid.tap",
        payload="no-thanks",
    )

    applied = apply_inbound_replies(store, [tap], account_id=SANDBOX_ACCOUNT_ID)

    (after,) = reports.iter_report_rows(store, campaign_id)
    assert applied.applied == 1
    assert (after.status, after.reply_payload) == (MessageStatus.RESPONDED, "no-thanks")
