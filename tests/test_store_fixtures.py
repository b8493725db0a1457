"""The sandbox seed that the demo, the tests and scripts rely on."""

from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.store import accounts, catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox


def test_seed_creates_the_account_the_sender_and_the_credits(db: Database) -> None:
    seed_sandbox(db, credits=500)
    assert accounts.get_balance(db, SANDBOX_ACCOUNT_ID) == 500
    assert catalog.get_sender(db, "sandbox-sender-1") == SANDBOX_SENDER


def test_seed_twice_tops_up_once(db: Database) -> None:
    seed_sandbox(db, credits=500)
    seed_sandbox(db, credits=500)
    assert accounts.get_balance(db, SANDBOX_ACCOUNT_ID) == 500
    assert len(accounts.list_ledger(db, SANDBOX_ACCOUNT_ID)) == 1


def test_seed_never_lowers_a_larger_balance(db: Database) -> None:
    seed_sandbox(db, credits=500)
    accounts.add_credits(db, SANDBOX_ACCOUNT_ID, 1000)
    seed_sandbox(db, credits=500)
    assert accounts.get_balance(db, SANDBOX_ACCOUNT_ID) == 1500


def test_seed_keeps_a_reconfigured_sender(db: Database) -> None:
    seed_sandbox(db)
    fast = Sender(**(SANDBOX_SENDER.model_dump() | {"rate_per_second": 1000}))
    catalog.upsert_sender(db, fast)
    seed_sandbox(db)
    assert catalog.get_sender(db, "sandbox-sender-1").rate_per_second == 1000
