"""Accounts, their encrypted WhatsApp connection, API keys and sender numbers read from Meta
(SPEC §9), on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import select

from tests.store_helpers import ACCOUNT, SENDER, seed_account, seed_campaign
from whatsapp_campaigns.domain.models import TemplateStatus
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.domain.tenancy import PhoneNumberInfo, Role
from whatsapp_campaigns.store import accounts, api_keys, catalog, connections
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import Conflict, InvalidInput, NotFound
from whatsapp_campaigns.store.models import ApiKey, WhatsAppConnection
from whatsapp_campaigns.store.secrets import SecretBox, SecretKeyError, generate_secret_key

TOKEN = "EAAG-secret-token-123"
BOX = SecretBox(generate_secret_key())


def _number(phone_number_id: str = "pn-9", **changes: object) -> PhoneNumberInfo:
    values: dict[str, object] = {
        "phone_number_id": phone_number_id,
        "display_number": "+1 202-555-0199",
        "verified_name": "Acme",
        "quality_rating": "GREEN",
        "throughput_level": "STANDARD",
        "messaging_limit": "TIER_10K",
    }
    return PhoneNumberInfo.model_validate(values | changes)


# ----------------------------------------------------------------------------- accounts


def test_create_account_starts_empty(db: Database) -> None:
    account = accounts.create_account(db, "acme", "Acme Inc")
    assert (account.id, account.name, account.credit_balance) == ("acme", "Acme Inc", 0)
    assert not account.connected and account.senders == 0


def test_create_account_twice_is_a_conflict(db: Database) -> None:
    accounts.create_account(db, "acme", "Acme")
    with pytest.raises(Conflict, match="account acme exists already"):
        accounts.create_account(db, "acme", "Acme again")


@pytest.mark.parametrize("bad", ["", "Acme", "a b", "-x", "x" * 65, "acme;drop"])
def test_create_account_refuses_an_id_that_is_not_plain(db: Database, bad: str) -> None:
    with pytest.raises(InvalidInput, match="account id"):
        accounts.create_account(db, bad, "Acme")


def test_list_accounts_shows_connection_and_numbers(db: Database) -> None:
    seed_account(db, "acme")
    seed_account(db, "beta")
    connections.connect_account(db, BOX, "beta", waba_id="waba-b", access_token=TOKEN)
    listed = {a.id: a for a in accounts.list_accounts(db)}
    assert (listed["acme"].connected, listed["acme"].senders) == (False, 1)
    assert (listed["beta"].connected, listed["beta"].waba_id) == (True, "waba-b")


def test_get_account_of_an_unknown_id_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="account nobody not found"):
        accounts.get_account(db, "nobody")


# -------------------------------------------------------------------------- connections


def test_a_connection_stores_the_token_encrypted_and_gives_it_back(db: Database) -> None:
    seed_account(db)
    connections.connect_account(
        db, BOX, ACCOUNT, waba_id="waba-1", access_token=TOKEN, app_secret="app-secret-1"
    )
    with db.session() as session:
        row = session.scalars(select(WhatsAppConnection)).one()
        assert TOKEN not in row.access_token_encrypted
        assert "app-secret-1" not in (row.app_secret_encrypted or "")
    credentials = connections.get_credentials(db, BOX, ACCOUNT)
    assert credentials is not None
    assert (credentials.waba_id, credentials.access_token) == ("waba-1", TOKEN)
    assert credentials.app_secret == "app-secret-1"
    assert TOKEN not in repr(credentials)


def test_reconnecting_replaces_the_token(db: Database) -> None:
    seed_account(db)
    connections.connect_account(db, BOX, ACCOUNT, waba_id="waba-1", access_token=TOKEN)
    connections.connect_account(db, BOX, ACCOUNT, waba_id="waba-1", access_token="new-token")
    credentials = connections.get_credentials(db, BOX, ACCOUNT)
    assert credentials is not None and credentials.access_token == "new-token"


def test_a_waba_serves_one_account_only(db: Database) -> None:
    seed_account(db, "acme")
    seed_account(db, "beta")
    connections.connect_account(db, BOX, "acme", waba_id="waba-1", access_token=TOKEN)
    with pytest.raises(Conflict, match="waba-1 is connected to another account"):
        connections.connect_account(db, BOX, "beta", waba_id="waba-1", access_token=TOKEN)


def test_connecting_without_a_secret_key_is_refused_and_stores_nothing(db: Database) -> None:
    seed_account(db)
    with pytest.raises(SecretKeyError, match="CAMPAIGNS_SECRET_KEY is not set"):
        connections.connect_account(db, SecretBox(""), ACCOUNT, waba_id="w", access_token=TOKEN)
    assert connections.get_credentials(db, BOX, ACCOUNT) is None


def test_a_wrong_secret_key_is_named_at_start_up(db: Database) -> None:
    seed_account(db)
    connections.connect_account(db, BOX, ACCOUNT, waba_id="waba-1", access_token=TOKEN)
    with pytest.raises(
        SecretKeyError, match=f"cannot decrypt the access token of account {ACCOUNT}"
    ):
        connections.verify_secret_key(db, SecretBox(generate_secret_key()))
    with pytest.raises(SecretKeyError, match="not set"):
        connections.verify_secret_key(db, SecretBox(""))
    assert connections.verify_secret_key(db, BOX) == 1


def test_a_rotated_key_still_reads_what_the_old_one_wrote(db: Database) -> None:
    seed_account(db)
    old = generate_secret_key()
    connections.connect_account(db, SecretBox(old), ACCOUNT, waba_id="w", access_token=TOKEN)
    rotated = SecretBox(f"{generate_secret_key()},{old}")
    credentials = connections.get_credentials(db, rotated, ACCOUNT)
    assert credentials is not None and credentials.access_token == TOKEN


def test_a_malformed_secret_key_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(SecretKeyError, match="campaigns accounts secret-key"):
        SecretBox("not-a-fernet-key")


def test_account_for_waba_finds_the_connected_account(db: Database) -> None:
    seed_account(db)
    connections.connect_account(db, BOX, ACCOUNT, waba_id="waba-1", access_token=TOKEN)
    assert connections.account_for_waba(db, "waba-1") == ACCOUNT
    assert connections.account_for_waba(db, "waba-2") is None


# ------------------------------------------------------------------------------ API keys


def test_a_created_key_authenticates_as_its_account_and_role(db: Database) -> None:
    seed_account(db)
    issued = api_keys.create_key(db, ACCOUNT, Role.OPERATOR, name="backend")
    found = api_keys.authenticate(db, issued.key)
    assert found is not None
    assert (found.id, found.account_id, found.role) == (issued.id, ACCOUNT, Role.OPERATOR)


def test_only_a_digest_of_the_key_is_stored(db: Database) -> None:
    seed_account(db)
    issued = api_keys.create_key(db, ACCOUNT, Role.VIEWER)
    secret = issued.key.split("_", 2)[2]
    with db.session() as session:
        row = session.scalars(select(ApiKey)).one()
        stored = " ".join(str(v) for v in vars(row).values())
    assert secret not in stored and issued.key not in stored


def test_a_key_carries_at_least_128_random_bits(db: Database) -> None:
    seed_account(db)
    keys = {api_keys.create_key(db, ACCOUNT, Role.VIEWER).key for _ in range(20)}
    assert len(keys) == 20
    assert all(len(k.split("_", 2)[2]) >= 22 for k in keys)  # 22 base64 chars = 132 bits


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # wrong secret
        lambda k: "wac_000000000000_" + k.split("_", 2)[2],  # unknown id
        lambda k: k.split("_", 2)[2],  # no prefix
        lambda k: "",
    ],
)
def test_a_wrong_key_does_not_authenticate(db: Database, mangle: object) -> None:
    seed_account(db)
    issued = api_keys.create_key(db, ACCOUNT, Role.ADMIN)
    assert callable(mangle)
    assert api_keys.authenticate(db, mangle(issued.key)) is None


def test_a_revoked_key_no_longer_authenticates(db: Database) -> None:
    seed_account(db)
    issued = api_keys.create_key(db, ACCOUNT, Role.ADMIN)
    revoked = api_keys.revoke_key(db, issued.id)
    assert revoked.revoked_at is not None
    assert api_keys.authenticate(db, issued.key) is None
    assert not api_keys.has_live_keys(db)


def test_keys_of_an_unknown_account_or_id_are_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        api_keys.create_key(db, "nobody", Role.VIEWER)
    with pytest.raises(NotFound):
        api_keys.revoke_key(db, "abc")


def test_list_keys_shows_no_secret(db: Database) -> None:
    seed_account(db)
    issued = api_keys.create_key(db, ACCOUNT, Role.OPERATOR)
    (listed,) = api_keys.list_keys(db, ACCOUNT)
    assert listed.id == issued.id
    assert issued.key not in listed.model_dump_json()


# ------------------------------------------------------------------------ sender numbers


def test_register_sender_takes_rate_and_tier_from_meta(db: Database) -> None:
    seed_account(db)
    standard = catalog.register_sender(db, ACCOUNT, _number("pn-std"))
    high = catalog.register_sender(db, ACCOUNT, _number("pn-high", throughput_level="HIGH"))
    assert (standard.rate_per_second, standard.tier) == (80, 10_000)
    assert high.rate_per_second == 1000
    assert (high.verified_name, high.quality_rating) == ("Acme", "GREEN")


def test_register_sender_with_a_rate_caps_it_lower(db: Database) -> None:
    seed_account(db)
    capped = catalog.register_sender(db, ACCOUNT, _number(throughput_level="HIGH"), rate_cap=200)
    assert (capped.rate_per_second, capped.rate_cap) == (200, 200)


@pytest.mark.parametrize("rate", [0, 1001])
def test_register_sender_refuses_a_rate_out_of_range(db: Database, rate: int) -> None:
    seed_account(db)
    with pytest.raises(InvalidInput, match="between 1 and 1000"):
        catalog.register_sender(db, ACCOUNT, _number(), rate_cap=rate)


def test_a_number_of_another_account_is_refused(db: Database) -> None:
    seed_account(db, "acme")
    seed_account(db, "beta")
    catalog.register_sender(db, "acme", _number())
    with pytest.raises(Conflict, match="registered to another account"):
        catalog.register_sender(db, "beta", _number())


def test_remove_sender_is_refused_while_a_campaign_uses_it(db: Database) -> None:
    seed_account(db)
    campaign_id = seed_campaign(db, status=CampaignStatus.SENDING)
    with pytest.raises(Conflict, match=campaign_id):
        catalog.remove_sender(db, SENDER)
    assert [s.phone_number_id for s in catalog.list_senders(db, ACCOUNT)] == [SENDER]


def test_remove_sender_hides_it_once_its_campaigns_finished(db: Database) -> None:
    seed_account(db)
    seed_campaign(db, status=CampaignStatus.COMPLETED)
    removed = catalog.remove_sender(db, SENDER)
    assert removed.removed_at is not None
    assert catalog.list_senders(db, ACCOUNT) == []
    with pytest.raises(NotFound):
        catalog.remove_sender(db, SENDER)


def test_a_removed_number_can_be_registered_again(db: Database) -> None:
    seed_account(db)
    catalog.register_sender(db, ACCOUNT, _number())
    catalog.remove_sender(db, "pn-9")
    again = catalog.register_sender(db, ACCOUNT, _number())
    assert again.removed_at is None


def test_a_throughput_upgrade_raises_the_rate_to_1000(db: Database) -> None:
    seed_account(db)
    catalog.register_sender(db, ACCOUNT, _number())
    upgraded = catalog.apply_quality_update(
        db, ACCOUNT, "12025550199", event="THROUGHPUT_UPGRADE", current_limit="TIER_UNLIMITED"
    )
    assert upgraded is not None
    assert (upgraded.throughput_level, upgraded.rate_per_second) == ("HIGH", 1000)


def test_a_throughput_upgrade_keeps_the_operators_cap(db: Database) -> None:
    seed_account(db)
    catalog.register_sender(db, ACCOUNT, _number(), rate_cap=50)
    upgraded = catalog.apply_quality_update(
        db, ACCOUNT, "+1 202 555 0199", event="THROUGHPUT_UPGRADE", current_limit=None
    )
    assert upgraded is not None and upgraded.rate_per_second == 50


def test_a_messaging_limit_change_sets_the_tier(db: Database) -> None:
    seed_account(db)
    catalog.register_sender(db, ACCOUNT, _number())
    changed = catalog.apply_quality_update(
        db, ACCOUNT, "12025550199", event="UPGRADE", current_limit="TIER_100K"
    )
    assert changed is not None
    assert (changed.messaging_limit, changed.tier) == ("TIER_100K", 100_000)


def test_a_quality_update_for_another_accounts_number_changes_nothing(db: Database) -> None:
    seed_account(db, "acme")
    seed_account(db, "beta")
    catalog.register_sender(db, "acme", _number())
    assert (
        catalog.apply_quality_update(
            db, "beta", "12025550199", event="THROUGHPUT_UPGRADE", current_limit=None
        )
        is None
    )
    assert catalog.get_sender(db, "pn-9").rate_per_second == 80


def test_set_template_status_changes_a_synced_template_only(db: Database) -> None:
    from whatsapp_campaigns.domain.models import Template

    seed_account(db)
    catalog.upsert_templates(db, ACCOUNT, [Template(name="spring_sale", variables=["name"])])
    assert catalog.set_template_status(db, ACCOUNT, "spring_sale", "en", TemplateStatus.PAUSED)
    assert not catalog.set_template_status(db, ACCOUNT, "unknown", "en", TemplateStatus.PAUSED)
    template = catalog.get_template(db, ACCOUNT, "spring_sale", "en")
    assert template is not None and template.status is TemplateStatus.PAUSED
