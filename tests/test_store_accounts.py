"""Accounts and credits (SPEC §4 rule 4): reserve at execution, charge each accepted message
when the run settles, release the rest; the balance never goes negative."""

import threading

import pytest

from tests.store_helpers import ACCOUNT, seed_account, seed_audience, seed_campaign, seed_messages
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.store import accounts, campaigns
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import InsufficientCredits, InvalidInput, NotFound
from whatsapp_campaigns.store.models import MessageRow


def _accept(db: Database, campaign_id: str, accepted: int, *, refused: int = 0) -> None:
    """Messages of the campaign: `accepted` with a WhatsApp id, `refused` without one."""
    phones = [f"+1202555{2000 + i:04d}" for i in range(accepted + refused)]
    audience_id = seed_audience(db, phones=phones)
    ids = seed_messages(db, campaign_id, audience_id)
    with db.session() as session:
        for n, message_id in enumerate(ids[:accepted]):
            message = session.get(MessageRow, message_id)
            assert message is not None
            message.provider_message_id = f"wamid.{campaign_id}.{audience_id}.{n}"
            message.status = "sent"


def _kinds(db: Database, account_id: str = ACCOUNT) -> list[tuple[str, int]]:
    return [(e.kind, e.amount) for e in reversed(accounts.list_ledger(db, account_id))]


def test_ensure_account_creates_an_account_with_a_zero_balance(db: Database) -> None:
    accounts.ensure_account(db, "new")
    assert accounts.get_balance(db, "new") == 0


def test_ensure_account_twice_keeps_the_balance(db: Database) -> None:
    accounts.ensure_account(db, "new", "New Co")
    accounts.add_credits(db, "new", 10)
    accounts.ensure_account(db, "new", "New Co")
    assert accounts.get_balance(db, "new") == 10


def test_get_balance_of_an_unknown_account_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="account nobody not found"):
        accounts.get_balance(db, "nobody")


def test_add_credits_returns_the_new_balance_and_writes_a_topup(db: Database) -> None:
    seed_account(db, balance=5)
    assert accounts.add_credits(db, ACCOUNT, 10, note="invoice 42") == 15
    (entry,) = accounts.list_ledger(db, ACCOUNT)
    assert (entry.kind, entry.amount, entry.balance_after, entry.note) == (
        "topup",
        10,
        15,
        "invoice 42",
    )


@pytest.mark.parametrize("amount", [0, -5])
def test_add_credits_refuses_a_non_positive_amount(db: Database, amount: int) -> None:
    seed_account(db)
    with pytest.raises(InvalidInput):
        accounts.add_credits(db, ACCOUNT, amount)


def test_add_credits_to_an_unknown_account_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        accounts.add_credits(db, "nobody", 5)


def test_top_up_to_raises_the_balance_to_the_minimum_only_once(db: Database) -> None:
    seed_account(db, balance=30)
    assert accounts.top_up_to(db, ACCOUNT, 100) == 100
    assert accounts.top_up_to(db, ACCOUNT, 100) == 100
    assert _kinds(db) == [("topup", 70)]


def test_reserve_moves_credits_from_the_balance_to_the_campaign(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_id = seed_campaign(db)
    accounts.reserve_credits(db, campaign_id, 40)
    assert accounts.get_balance(db, ACCOUNT) == 60
    assert campaigns.get_campaign(db, campaign_id).reserved_credits == 40
    assert _kinds(db) == [("reserve", 40)]


def test_reserve_twice_reserves_once(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_id = seed_campaign(db)
    accounts.reserve_credits(db, campaign_id, 40)
    accounts.reserve_credits(db, campaign_id, 40)
    assert accounts.get_balance(db, ACCOUNT) == 60
    assert _kinds(db) == [("reserve", 40)]


def test_reserve_more_than_the_balance_raises_and_changes_nothing(db: Database) -> None:
    seed_account(db, balance=10)
    campaign_id = seed_campaign(db)
    with pytest.raises(InsufficientCredits) as error:
        accounts.reserve_credits(db, campaign_id, 11)
    assert (error.value.needed, error.value.available) == (11, 10)
    assert str(error.value) == "not enough credits: 11 needed, 10 available"
    assert accounts.get_balance(db, ACCOUNT) == 10
    assert campaigns.get_campaign(db, campaign_id).reserved_credits == 0
    assert accounts.list_ledger(db, ACCOUNT) == []


def test_reserve_for_an_unknown_campaign_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="campaign nope not found"):
        accounts.reserve_credits(db, "nope", 1)


def test_concurrent_reservations_never_overdraw_the_account(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_ids = [seed_campaign(db) for _ in range(20)]
    succeeded: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(len(campaign_ids))

    def reserve(campaign_id: str) -> None:
        start.wait()
        try:
            accounts.reserve_credits(db, campaign_id, 15)
            succeeded.append(campaign_id)
        except InsufficientCredits:
            refused.append(campaign_id)

    threads = [threading.Thread(target=reserve, args=(c,)) for c in campaign_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(succeeded) == 6 and len(refused) == 14
    assert accounts.get_balance(db, ACCOUNT) == 100 - 15 * len(succeeded)
    reserved = {c: campaigns.get_campaign(db, c).reserved_credits for c in campaign_ids}
    assert {c for c, r in reserved.items() if r} == set(succeeded)


def test_settling_charges_each_accepted_message_from_the_reservation(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_id = seed_campaign(db)
    accounts.reserve_credits(db, campaign_id, 10)
    _accept(db, campaign_id, 3, refused=2)
    accounts.release_credits(db, campaign_id, credits_per_message=1)
    campaign = campaigns.get_campaign(db, campaign_id)
    assert (campaign.reserved_credits, campaign.charged_credits) == (0, 3)
    assert accounts.get_balance(db, ACCOUNT) == 97


def test_charges_beyond_the_reservation_come_from_the_balance(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_id = seed_campaign(db)
    accounts.reserve_credits(db, campaign_id, 1)
    _accept(db, campaign_id, 2)
    accounts.release_credits(db, campaign_id, credits_per_message=1)
    assert campaigns.get_campaign(db, campaign_id).charged_credits == 2
    assert accounts.get_balance(db, ACCOUNT) == 98


def test_a_charge_with_nothing_left_is_still_recorded_and_the_balance_stays_at_zero(
    db: Database,
) -> None:
    seed_account(db, balance=0)
    campaign_id = seed_campaign(db)
    _accept(db, campaign_id, 1)
    accounts.release_credits(db, campaign_id, credits_per_message=1)
    assert campaigns.get_campaign(db, campaign_id).charged_credits == 1
    assert accounts.get_balance(db, ACCOUNT) == 0


def test_charges_are_ledgered_once_per_run_not_per_message(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_id = seed_campaign(db)
    accounts.reserve_credits(db, campaign_id, 10)
    _accept(db, campaign_id, 4)
    assert accounts.release_credits(db, campaign_id, credits_per_message=1) == 6
    assert accounts.get_balance(db, ACCOUNT) == 96
    assert _kinds(db) == [("reserve", 10), ("charge", 4), ("release", 6)]


def test_release_twice_releases_and_charges_once(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_id = seed_campaign(db)
    accounts.reserve_credits(db, campaign_id, 10)
    _accept(db, campaign_id, 1)
    accounts.release_credits(db, campaign_id, credits_per_message=1)
    assert accounts.release_credits(db, campaign_id, credits_per_message=1) == 0
    assert accounts.get_balance(db, ACCOUNT) == 99
    assert _kinds(db) == [("reserve", 10), ("charge", 1), ("release", 9)]


def test_release_after_a_retry_run_charges_only_the_newly_accepted(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_id = seed_campaign(db)
    accounts.reserve_credits(db, campaign_id, 10)
    _accept(db, campaign_id, 3)
    accounts.release_credits(db, campaign_id, credits_per_message=1)
    accounts.reserve_credits(db, campaign_id, 5)  # retry failed: a new run, a new reservation
    _accept(db, campaign_id, 2)
    assert accounts.release_credits(db, campaign_id, credits_per_message=1) == 3
    assert accounts.get_balance(db, ACCOUNT) == 95
    assert _kinds(db)[-2:] == [("charge", 2), ("release", 3)]


def test_balance_after_a_campaign_is_the_start_minus_its_charges(db: Database) -> None:
    seed_account(db, balance=50)
    campaign_id = seed_campaign(db, status=CampaignStatus.SENDING)
    accounts.reserve_credits(db, campaign_id, 10)
    _accept(db, campaign_id, 12)  # more accepted messages than reserved
    accounts.release_credits(db, campaign_id, credits_per_message=1)
    assert accounts.get_balance(db, ACCOUNT) == 50 - 12


def test_the_charge_per_message_is_the_setting(db: Database) -> None:
    seed_account(db, balance=100)
    campaign_id = seed_campaign(db)
    accounts.reserve_credits(db, campaign_id, 30)
    _accept(db, campaign_id, 4)
    accounts.release_credits(db, campaign_id, credits_per_message=5)
    assert accounts.get_balance(db, ACCOUNT) == 80


def test_list_ledger_is_newest_first_and_limited(db: Database) -> None:
    seed_account(db)
    for amount in (1, 2, 3):
        accounts.add_credits(db, ACCOUNT, amount)
    assert [e.amount for e in accounts.list_ledger(db, ACCOUNT, limit=2)] == [3, 2]
