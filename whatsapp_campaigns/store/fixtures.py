"""The sandbox account and sender number that the demo, the tests and scripts rely on
(SPEC §7). Templates are not seeded here: they come from a provider sync."""

from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.store import accounts, catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound

SANDBOX_ACCOUNT_ID = "default"
SANDBOX_SENDER = Sender(
    phone_number_id="sandbox-sender-1",
    account_id=SANDBOX_ACCOUNT_ID,
    display_number="+12025550100",
    rate_per_second=80,
    tier=100_000,
)


def seed_sandbox(db: Database, *, credits: int = 1_000_000) -> None:
    """Make sure the sandbox account and sender exist and the balance is at least `credits`.

    Safe to repeat; a sender reconfigured since (another rate, say) is left as it is.
    """
    accounts.ensure_account(db, SANDBOX_ACCOUNT_ID, "Sandbox")
    try:
        catalog.get_sender(db, SANDBOX_SENDER.phone_number_id)
    except NotFound:
        catalog.upsert_sender(db, SANDBOX_SENDER)
    accounts.top_up_to(db, SANDBOX_ACCOUNT_ID, credits, note="sandbox seed")
