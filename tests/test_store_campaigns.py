"""Campaigns: drafts, scheduling, status changes with their timeline, listing, duplication."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from tests.store_helpers import (
    ACCOUNT,
    SENDER,
    draft,
    seed_account,
    seed_audience,
    seed_campaign,
)
from whatsapp_campaigns.domain.models import ActorKind, TimelineEntry
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.domain.transitions import CampaignAction
from whatsapp_campaigns.store import campaigns
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import ActionRefused, InvalidInput, NotFound
from whatsapp_campaigns.store.models import TimelineRow

S = CampaignStatus
T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def account(db: Database) -> Database:
    seed_account(db)
    return db


def _moved(db: Database, campaign_id: str, *statuses: CampaignStatus) -> None:
    for status in statuses:
        campaigns.change_status(db, campaign_id, status, action="test")


# --- ids and drafts -------------------------------------------------------------------------


def test_new_campaign_id_is_twelve_hex_characters() -> None:
    campaign_id = campaigns.new_campaign_id()
    assert len(campaign_id) == 12 and int(campaign_id, 16) >= 0
    assert campaign_id != campaigns.new_campaign_id()


def test_create_draft_stores_the_content_as_a_draft(account: Database) -> None:
    audience_id = seed_audience(account)
    policy = CampaignPolicy(lock_when_sending=True, cancel_cutoff=timedelta(minutes=15))
    campaign = campaigns.create_draft(
        account, ACCOUNT, draft(audience_id=audience_id, policy=policy, timezone="Europe/Paris")
    )
    assert campaign == campaigns.get_campaign(account, campaign.id)
    assert campaign.status is S.DRAFT
    assert (campaign.name, campaign.template_name, campaign.language) == (
        "Spring sale",
        "spring_sale",
        "en",
    )
    assert (campaign.sender_phone_number_id, campaign.audience_id) == (SENDER, audience_id)
    assert (campaign.policy, campaign.timezone, campaign.send_at) == (policy, "Europe/Paris", None)
    assert (campaign.run_number, campaign.reserved_credits, campaign.charged_credits) == (1, 0, 0)


def test_create_draft_writes_a_created_timeline_entry_with_the_actor(account: Database) -> None:
    campaign = campaigns.create_draft(
        account, ACCOUNT, draft(), by="crm-service", actor=ActorKind.SERVICE
    )
    (entry,) = campaigns.get_timeline(account, campaign.id)
    assert (entry.action, entry.from_status, entry.to_status) == ("created", None, S.DRAFT)
    assert (entry.actor, entry.by) == (ActorKind.SERVICE, "crm-service")


def test_create_draft_with_an_unknown_sender_is_invalid(account: Database) -> None:
    with pytest.raises(InvalidInput, match="unknown sender number nope"):
        campaigns.create_draft(account, ACCOUNT, draft(sender_phone_number_id="nope"))


def test_create_draft_with_another_accounts_sender_is_invalid(account: Database) -> None:
    seed_account(account, "other")
    with pytest.raises(InvalidInput, match="unknown sender number other-sender-1 for account"):
        campaigns.create_draft(account, ACCOUNT, draft(sender_phone_number_id="other-sender-1"))


def test_create_draft_with_another_accounts_audience_is_invalid(account: Database) -> None:
    seed_account(account, "other")
    audience_id = seed_audience(account, "other")
    with pytest.raises(InvalidInput, match="unknown audience"):
        campaigns.create_draft(account, ACCOUNT, draft(audience_id=audience_id))


def test_create_draft_with_an_unknown_audience_is_invalid(account: Database) -> None:
    with pytest.raises(InvalidInput, match="unknown audience"):
        campaigns.create_draft(account, ACCOUNT, draft(audience_id="nope"))


def test_create_draft_with_an_unknown_timezone_is_invalid(account: Database) -> None:
    with pytest.raises(InvalidInput, match="unknown timezone 'Mars/Olympus'"):
        campaigns.create_draft(account, ACCOUNT, draft(timezone="Mars/Olympus"))


def test_edit_draft_replaces_the_content(account: Database) -> None:
    campaign = campaigns.create_draft(account, ACCOUNT, draft())
    edited = campaigns.edit_draft(
        account, campaign.id, draft(name="Summer sale", template_name="summer"), by="ann"
    )
    assert (edited.name, edited.template_name) == ("Summer sale", "summer")
    assert campaigns.get_campaign(account, campaign.id) == edited
    assert campaigns.get_timeline(account, campaign.id)[-1].action == "edit"


def test_edit_is_allowed_while_scheduled(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SCHEDULED)
    assert campaigns.edit_draft(account, campaign_id, draft(name="New")).name == "New"


def test_edit_is_refused_once_sending(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SENDING)
    with pytest.raises(ActionRefused, match="content is locked") as error:
        campaigns.edit_draft(account, campaign_id, draft(name="New"))
    assert error.value.refusal.action is CampaignAction.EDIT
    assert campaigns.get_campaign(account, campaign_id).name == "Spring sale"


def test_edit_validates_the_sender(account: Database) -> None:
    campaign = campaigns.create_draft(account, ACCOUNT, draft())
    with pytest.raises(InvalidInput):
        campaigns.edit_draft(account, campaign.id, draft(sender_phone_number_id="nope"))


def test_get_campaign_unknown_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="campaign nope not found"):
        campaigns.get_campaign(db, "nope")


# --- listing --------------------------------------------------------------------------------


def _names(result: tuple[list[campaigns.Campaign], int]) -> list[str]:
    return [c.name for c in result[0]]


def test_list_is_newest_first_by_default_with_the_total(account: Database) -> None:
    for i, name in enumerate(["a", "b", "c"]):
        seed_campaign(account, name=name, created_at=T0 + timedelta(minutes=i))
    page, total = campaigns.list_campaigns(account, ACCOUNT)
    assert [c.name for c in page] == ["c", "b", "a"] and total == 3


def test_list_pages_with_limit_and_offset_and_keeps_the_total(account: Database) -> None:
    for i in range(5):
        seed_campaign(account, name=f"c{i}", created_at=T0 + timedelta(minutes=i))
    result = campaigns.list_campaigns(account, ACCOUNT, descending=False, limit=2, offset=2)
    assert _names(result) == ["c2", "c3"] and result[1] == 5


def test_list_filters_by_status(account: Database) -> None:
    seed_campaign(account, name="draft")
    seed_campaign(account, name="sending", status=S.SENDING)
    seed_campaign(account, name="paused", status=S.PAUSED)
    result = campaigns.list_campaigns(account, ACCOUNT, statuses=[S.SENDING, S.PAUSED], sort="name")
    assert _names(result) == ["sending", "paused"] and result[1] == 2


def test_list_filters_by_sender(account: Database) -> None:
    seed_campaign(account, name="ours")
    assert _names(campaigns.list_campaigns(account, ACCOUNT, sender=SENDER)) == ["ours"]
    assert campaigns.list_campaigns(account, ACCOUNT, sender="other") == ([], 0)


def test_list_filters_by_creation_time_since_inclusive_until_exclusive(account: Database) -> None:
    for day in range(4):
        seed_campaign(account, name=f"day{day}", created_at=T0 + timedelta(days=day))
    result = campaigns.list_campaigns(
        account, ACCOUNT, since=T0 + timedelta(days=1), until=T0 + timedelta(days=3)
    )
    assert _names(result) == ["day2", "day1"]


def test_list_search_matches_part_of_the_name_ignoring_case(account: Database) -> None:
    seed_campaign(account, name="Spring SALE 2030")
    seed_campaign(account, name="Order updates")
    assert _names(campaigns.list_campaigns(account, ACCOUNT, search="sale")) == ["Spring SALE 2030"]


def test_list_search_matches_an_exact_id(account: Database) -> None:
    campaign_id = seed_campaign(account, name="Whatever")
    seed_campaign(account, name="Other")
    assert _names(campaigns.list_campaigns(account, ACCOUNT, search=campaign_id)) == ["Whatever"]


def test_list_search_treats_wildcards_literally(account: Database) -> None:
    seed_campaign(account, name="100% off")
    seed_campaign(account, name="1000 off")
    assert _names(campaigns.list_campaigns(account, ACCOUNT, search="0%")) == ["100% off"]


def test_list_sorts_by_name_ignoring_case(account: Database) -> None:
    for name in ["beta", "Alpha", "gamma"]:
        seed_campaign(account, name=name)
    result = campaigns.list_campaigns(account, ACCOUNT, sort="name", descending=False)
    assert _names(result) == ["Alpha", "beta", "gamma"]


@pytest.mark.parametrize("descending", [True, False])
def test_list_sorted_by_schedule_puts_unscheduled_last(account: Database, descending: bool) -> None:
    seed_campaign(account, name="unscheduled")
    seed_campaign(account, name="early", send_at=T0)
    seed_campaign(account, name="late", send_at=T0 + timedelta(days=1))
    result = campaigns.list_campaigns(account, ACCOUNT, sort="scheduled", descending=descending)
    expected = ["late", "early"] if descending else ["early", "late"]
    assert _names(result) == [*expected, "unscheduled"]


def test_list_sorts_by_status(account: Database) -> None:
    seed_campaign(account, name="s", status=S.SENDING)
    seed_campaign(account, name="d", status=S.DRAFT)
    seed_campaign(account, name="c", status=S.COMPLETED)
    result = campaigns.list_campaigns(account, ACCOUNT, sort="status", descending=False)
    assert _names(result) == ["c", "d", "s"]


def test_list_shows_only_the_accounts_campaigns(account: Database) -> None:
    seed_account(account, "other")
    seed_campaign(account, "other")
    assert campaigns.list_campaigns(account, ACCOUNT) == ([], 0)


# --- scheduling -----------------------------------------------------------------------------


def test_set_schedule_stores_the_time_in_utc_and_the_timezone(account: Database) -> None:
    campaign_id = seed_campaign(account)
    paris_time = datetime(2030, 3, 1, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))
    campaign = campaigns.set_schedule(account, campaign_id, paris_time, "Europe/Paris")
    stored = campaigns.get_campaign(account, campaign_id)
    assert stored == campaign
    assert stored.send_at == T0 and stored.send_at is not None
    assert stored.send_at.utcoffset() == timedelta(0) and stored.timezone == "Europe/Paris"


def test_set_schedule_moves_a_scheduled_campaign(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SCHEDULED, send_at=T0)
    campaigns.set_schedule(account, campaign_id, T0 + timedelta(hours=2), "UTC")
    assert campaigns.get_campaign(account, campaign_id).send_at == T0 + timedelta(hours=2)


def test_set_schedule_refuses_an_unknown_timezone(account: Database) -> None:
    campaign_id = seed_campaign(account)
    with pytest.raises(InvalidInput, match="unknown timezone"):
        campaigns.set_schedule(account, campaign_id, T0, "Not/AZone")


def test_set_schedule_refuses_a_naive_datetime(account: Database) -> None:
    campaign_id = seed_campaign(account)
    with pytest.raises(InvalidInput, match="aware"):
        campaigns.set_schedule(account, campaign_id, datetime(2030, 3, 1, 9), "UTC")


def test_set_schedule_is_refused_once_sending(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SENDING)
    with pytest.raises(ActionRefused, match="already sending"):
        campaigns.set_schedule(account, campaign_id, T0, "UTC")


# --- status changes -------------------------------------------------------------------------


def test_change_status_updates_the_status_and_reason(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SENDING)
    campaign = campaigns.change_status(
        account, campaign_id, S.PAUSED, action="pause", reason="checking replies"
    )
    assert (campaign.status, campaign.status_reason) == (S.PAUSED, "checking replies")
    assert campaigns.get_campaign(account, campaign_id) == campaign


def test_change_status_writes_a_timeline_entry(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SENDING)
    campaigns.change_status(
        account,
        campaign_id,
        S.PAUSED,
        action="pause",
        reason="checking",
        actor=ActorKind.USER,
        by="ann",
        at=T0,
    )
    assert campaigns.get_timeline(account, campaign_id) == [
        TimelineEntry(
            at=T0,
            action="pause",
            from_status=S.SENDING,
            to_status=S.PAUSED,
            actor=ActorKind.USER,
            by="ann",
            reason="checking",
        )
    ]


def test_change_status_to_the_current_status_changes_and_writes_nothing(
    account: Database,
) -> None:
    campaign_id = seed_campaign(account, status=S.SENDING)
    first = campaigns.change_status(account, campaign_id, S.PAUSED, action="pause", reason="r")
    again = campaigns.change_status(account, campaign_id, S.PAUSED, action="pause", reason="other")
    assert again == first
    assert len(campaigns.get_timeline(account, campaign_id)) == 1


def test_change_status_refuses_a_user_action_with_the_rules_reason(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.DRAFT)
    with pytest.raises(ActionRefused) as error:
        campaigns.change_status(account, campaign_id, S.PAUSED, action="pause")
    assert str(error.value) == "cannot pause: the campaign is draft and has not started sending"
    assert campaigns.get_campaign(account, campaign_id).status is S.DRAFT
    assert campaigns.get_timeline(account, campaign_id) == []


def test_change_status_refuses_leaving_cancelled(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.CANCELLED)
    with pytest.raises(ActionRefused, match="cancelled"):
        campaigns.change_status(account, campaign_id, S.QUEUED, action="retry_failed")


def test_change_status_refuses_an_engine_transition_with_a_value_error(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.CANCELLED)
    with pytest.raises(ValueError, match="cannot go from cancelled to completed"):
        campaigns.change_status(account, campaign_id, S.COMPLETED, action="finish")


def test_started_at_is_set_the_first_time_the_campaign_is_queued(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SCHEDULED)
    campaigns.change_status(account, campaign_id, S.QUEUED, action="start", at=T0)
    campaigns.change_status(
        account, campaign_id, S.SENDING, action="preflight", at=T0 + timedelta(1)
    )
    assert campaigns.get_campaign(account, campaign_id).started_at == T0


def test_started_at_is_set_when_sending_starts_without_queued(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.PAUSED)
    campaign = campaigns.change_status(account, campaign_id, S.SENDING, action="resume", at=T0)
    assert campaign.started_at == T0


def test_finished_at_is_set_when_the_campaign_ends(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SENDING)
    campaign = campaigns.change_status(account, campaign_id, S.COMPLETED, action="finish", at=T0)
    assert campaign.finished_at == T0


def test_retrying_a_finished_campaign_starts_its_next_run(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SENDING)
    campaigns.change_status(account, campaign_id, S.FAILED, action="finish", at=T0)
    campaign = campaigns.change_status(account, campaign_id, S.QUEUED, action="retry_failed")
    assert (campaign.run_number, campaign.finished_at) == (2, None)


def test_change_status_of_an_unknown_campaign_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        campaigns.change_status(db, "nope", S.QUEUED, action="start")


def test_change_status_refuses_a_naive_time(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SENDING)
    with pytest.raises(InvalidInput):
        campaigns.change_status(
            account, campaign_id, S.PAUSED, action="pause", at=datetime(2030, 1, 1)
        )


# --- timeline -------------------------------------------------------------------------------


def _refused_cancel(at: datetime) -> TimelineEntry:
    return TimelineEntry(at=at, action="cancel", refused=True, reason="too late", by="ann")


def test_record_timeline_appends_an_entry(account: Database) -> None:
    campaign_id = seed_campaign(account)
    campaigns.record_timeline(account, campaign_id, _refused_cancel(T0))
    assert campaigns.get_timeline(account, campaign_id) == [_refused_cancel(T0)]


def test_record_timeline_twice_writes_one_entry(account: Database) -> None:
    campaign_id = seed_campaign(account)
    campaigns.record_timeline(account, campaign_id, _refused_cancel(T0))
    campaigns.record_timeline(account, campaign_id, _refused_cancel(T0))
    assert len(campaigns.get_timeline(account, campaign_id)) == 1


def test_record_timeline_keeps_the_same_action_at_another_time(account: Database) -> None:
    campaign_id = seed_campaign(account)
    campaigns.record_timeline(account, campaign_id, _refused_cancel(T0))
    campaigns.record_timeline(account, campaign_id, _refused_cancel(T0 + timedelta(seconds=1)))
    assert len(campaigns.get_timeline(account, campaign_id)) == 2


def test_record_timeline_for_an_unknown_campaign_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        campaigns.record_timeline(db, "nope", _refused_cancel(T0))


def test_timeline_is_in_time_order(account: Database) -> None:
    campaign_id = seed_campaign(account)
    for minutes in (5, 1, 3):
        campaigns.record_timeline(
            account, campaign_id, _refused_cancel(T0 + timedelta(minutes=minutes))
        )
    times = [e.at for e in campaigns.get_timeline(account, campaign_id)]
    assert times == sorted(times) and len(times) == 3


# --- duplicate and delete -------------------------------------------------------------------


def test_duplicate_is_a_new_unscheduled_draft_with_the_same_content(account: Database) -> None:
    audience_id = seed_audience(account)
    policy = CampaignPolicy(lock_when_sending=True)
    source = campaigns.create_draft(
        account, ACCOUNT, draft(audience_id=audience_id, policy=policy, timezone="Asia/Tokyo")
    )
    campaigns.set_schedule(account, source.id, T0, "Asia/Tokyo")
    _moved(account, source.id, S.SCHEDULED, S.QUEUED, S.SENDING, S.COMPLETED)

    copy = campaigns.duplicate_campaign(account, source.id, by="ann")

    assert copy.id != source.id and copy.duplicated_from == source.id
    assert (copy.status, copy.send_at, copy.run_number) == (S.DRAFT, None, 1)
    assert (copy.template_name, copy.language, copy.audience_id) == (
        source.template_name,
        source.language,
        audience_id,
    )
    assert (copy.policy, copy.timezone, copy.sender_phone_number_id) == (
        policy,
        "Asia/Tokyo",
        SENDER,
    )
    assert copy.name == "Spring sale (copy)"
    (created,) = campaigns.get_timeline(account, copy.id)
    assert (created.action, created.by) == ("created", "ann")


def test_duplicate_of_an_unknown_campaign_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        campaigns.duplicate_campaign(db, "nope")


def test_delete_draft_removes_it_and_its_timeline(account: Database) -> None:
    campaign = campaigns.create_draft(account, ACCOUNT, draft())
    campaigns.delete_draft(account, campaign.id)
    with pytest.raises(NotFound):
        campaigns.get_campaign(account, campaign.id)
    with account.session() as session:
        assert session.scalar(select(func.count()).select_from(TimelineRow)) == 0


def test_delete_is_refused_outside_draft(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.SCHEDULED)
    with pytest.raises(
        ActionRefused, match="cannot delete: not allowed while the campaign is scheduled"
    ):
        campaigns.delete_draft(account, campaign_id)
    assert campaigns.get_campaign(account, campaign_id).status is S.SCHEDULED


# --- sharing a sender number ----------------------------------------------------------------


def test_campaigns_sending_or_about_to_on_the_same_number_are_counted_with_the_campaign(
    account: Database,
) -> None:
    seed_account(account, "beta")
    ours = seed_campaign(account, status=S.SENDING)
    seed_campaign(account, status=S.SENDING)
    seed_campaign(account, status=S.QUEUED)
    seed_campaign(account, status=S.PAUSED)
    seed_campaign(account, status=S.SCHEDULED)
    seed_campaign(account, "beta", status=S.SENDING)
    assert campaigns.sharing_sender(account, ours)[0] == 3


def test_a_campaign_that_no_longer_sends_counts_as_one_on_its_number(account: Database) -> None:
    paused = seed_campaign(account, status=S.PAUSED)
    assert campaigns.sharing_sender(account, paused)[0] == 1


def test_the_weights_of_the_campaigns_sending_on_a_number_are_summed_with_the_campaign(
    account: Database,
) -> None:
    seed_account(account, "beta")
    ours = seed_campaign(account, status=S.SENDING, policy={"weight": 3})
    seed_campaign(account, status=S.SENDING, policy={"weight": 0.5})
    seed_campaign(account, status=S.QUEUED)  # the default weight, 1
    seed_campaign(account, status=S.PAUSED, policy={"weight": 7})
    seed_campaign(account, "beta", status=S.SENDING, policy={"weight": 9})
    assert campaigns.sharing_sender(account, ours) == (3, 4.5)


def test_a_campaign_that_no_longer_sends_counts_its_own_weight_with_those_on_its_number(
    account: Database,
) -> None:
    paused = seed_campaign(account, status=S.PAUSED, policy={"weight": 2})
    seed_campaign(account, status=S.SENDING)
    assert campaigns.sharing_sender(account, paused) == (1, 3.0)
