"""Sender numbers and message templates."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.store_helpers import ACCOUNT, seed_account, seed_campaign
from whatsapp_campaigns.domain.models import Sender, Template, TemplateCategory, TemplateStatus
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import InvalidInput, NotFound

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _sender(**changes: object) -> Sender:
    values: dict[str, object] = {
        "phone_number_id": "pn-1",
        "account_id": ACCOUNT,
        "display_number": "+12025550111",
    }
    return Sender.model_validate(values | changes)


def _template(name: str = "order_update", **changes: object) -> Template:
    values: dict[str, object] = {"name": name, "variables": ["name", "order_id"]}
    return Template.model_validate(values | changes)


def test_upsert_sender_creates_it(db: Database) -> None:
    seed_account(db)
    stored = catalog.upsert_sender(db, _sender(rate_per_second=200))
    assert stored == _sender(rate_per_second=200)
    assert catalog.get_sender(db, "pn-1") == stored


def test_upsert_sender_updates_its_settings_and_keeps_its_throttle(db: Database) -> None:
    seed_account(db)
    catalog.upsert_sender(db, _sender())
    catalog.set_sender_throttled_until(db, "pn-1", T0)
    stored = catalog.upsert_sender(db, _sender(rate_per_second=500, tier=1000))
    assert (stored.rate_per_second, stored.tier, stored.throttled_until) == (500, 1000, T0)


def test_upsert_sender_of_an_unknown_account_is_invalid(db: Database) -> None:
    with pytest.raises(InvalidInput, match="unknown account"):
        catalog.upsert_sender(db, _sender(account_id="nobody"))


def test_get_sender_unknown_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="sender pn-404 not found"):
        catalog.get_sender(db, "pn-404")


def test_list_senders_all_or_of_one_account(db: Database) -> None:
    seed_account(db, "a")
    seed_account(db, "b")
    assert [s.phone_number_id for s in catalog.list_senders(db)] == ["a-sender-1", "b-sender-1"]
    assert [s.phone_number_id for s in catalog.list_senders(db, "b")] == ["b-sender-1"]


def test_throttle_moves_later(db: Database) -> None:
    seed_account(db)
    catalog.upsert_sender(db, _sender())
    catalog.set_sender_throttled_until(db, "pn-1", T0)
    catalog.set_sender_throttled_until(db, "pn-1", T0 + timedelta(hours=1))
    assert catalog.get_sender(db, "pn-1").throttled_until == T0 + timedelta(hours=1)


def test_throttle_never_moves_earlier(db: Database) -> None:
    seed_account(db)
    catalog.upsert_sender(db, _sender())
    catalog.set_sender_throttled_until(db, "pn-1", T0)
    catalog.set_sender_throttled_until(db, "pn-1", T0 - timedelta(hours=1))
    assert catalog.get_sender(db, "pn-1").throttled_until == T0


def test_throttle_is_cleared_with_none(db: Database) -> None:
    seed_account(db)
    catalog.upsert_sender(db, _sender())
    catalog.set_sender_throttled_until(db, "pn-1", T0)
    catalog.set_sender_throttled_until(db, "pn-1", None)
    assert catalog.get_sender(db, "pn-1").throttled_until is None


def test_throttle_is_stored_in_utc(db: Database) -> None:
    seed_account(db)
    catalog.upsert_sender(db, _sender())
    paris = T0.astimezone(ZoneInfo("Europe/Paris"))
    catalog.set_sender_throttled_until(db, "pn-1", paris)
    stored = catalog.get_sender(db, "pn-1").throttled_until
    assert stored == T0 and stored is not None and stored.utcoffset() == timedelta(0)


def test_throttle_of_an_unknown_sender_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        catalog.set_sender_throttled_until(db, "pn-404", T0)


def test_throttle_refuses_a_naive_datetime(db: Database) -> None:
    seed_account(db)
    catalog.upsert_sender(db, _sender())
    with pytest.raises(InvalidInput):
        catalog.set_sender_throttled_until(db, "pn-1", datetime(2030, 1, 1))


def test_upsert_templates_inserts_them_and_returns_the_count(db: Database) -> None:
    seed_account(db)
    count = catalog.upsert_templates(db, ACCOUNT, [_template(), _template("spring_sale")])
    assert count == 2
    assert catalog.get_template(db, ACCOUNT, "order_update", "en") == _template()


def test_upsert_templates_updates_by_name_and_language(db: Database) -> None:
    seed_account(db)
    catalog.upsert_templates(db, ACCOUNT, [_template(status=TemplateStatus.PENDING)])
    catalog.upsert_templates(
        db, ACCOUNT, [_template(status=TemplateStatus.APPROVED, variables=["name"])]
    )
    (stored,) = catalog.list_templates(db, ACCOUNT)
    assert (stored.status, stored.variables) == (TemplateStatus.APPROVED, ["name"])


def test_templates_with_the_same_name_in_two_languages_are_two_templates(db: Database) -> None:
    seed_account(db)
    catalog.upsert_templates(db, ACCOUNT, [_template(language="en"), _template(language="fr")])
    assert [(t.name, t.language) for t in catalog.list_templates(db, ACCOUNT)] == [
        ("order_update", "en"),
        ("order_update", "fr"),
    ]


def test_upsert_templates_keeps_the_last_of_duplicates_in_one_call(db: Database) -> None:
    seed_account(db)
    count = catalog.upsert_templates(
        db,
        ACCOUNT,
        [
            _template(category=TemplateCategory.MARKETING),
            _template(category=TemplateCategory.UTILITY),
        ],
    )
    assert count == 1
    (stored,) = catalog.list_templates(db, ACCOUNT)
    assert stored.category is TemplateCategory.UTILITY


def test_upsert_templates_stores_many_in_one_call(db: Database) -> None:
    seed_account(db)
    templates = [_template(f"t{i:04d}") for i in range(1200)]
    assert catalog.upsert_templates(db, ACCOUNT, templates) == 1200
    assert len(catalog.list_templates(db, ACCOUNT)) == 1200


def test_templates_are_per_account(db: Database) -> None:
    seed_account(db, "a")
    seed_account(db, "b")
    catalog.upsert_templates(db, "a", [_template()])
    assert catalog.get_template(db, "b", "order_update", "en") is None
    assert catalog.list_templates(db, "b") == []


def test_get_template_unknown_is_none(db: Database) -> None:
    seed_account(db)
    assert catalog.get_template(db, ACCOUNT, "nope", "en") is None


def test_upsert_templates_of_an_unknown_account_is_invalid(db: Database) -> None:
    with pytest.raises(InvalidInput):
        catalog.upsert_templates(db, "nobody", [_template()])


def test_numbers_in_use_are_those_of_campaigns_that_may_still_send(db: Database) -> None:
    for account in ("a1", "a2", "a3", "a4"):
        seed_account(db, account)
    seed_campaign(db, "a1", status=CampaignStatus.SENDING)
    seed_campaign(db, "a2", status=CampaignStatus.PAUSED)
    seed_campaign(db, "a3", status=CampaignStatus.QUEUED)
    seed_campaign(db, "a3", status=CampaignStatus.SENDING)
    for finished_or_not_started in (
        CampaignStatus.DRAFT,
        CampaignStatus.SCHEDULED,
        CampaignStatus.COMPLETED,
        CampaignStatus.FAILED,
        CampaignStatus.CANCELLED,
    ):
        seed_campaign(db, "a4", status=finished_or_not_started)
    assert catalog.numbers_in_use(db) == {"a1-sender-1", "a2-sender-1", "a3-sender-1"}
