"""`campaigns accounts|senders|keys` (SPEC §9) in process, on the store and the in-process
sandbox, with Temporal out of reach (TEMPORAL_ADDRESS points nowhere): store-only commands."""

import json

import pytest

from tests.cli_helpers import invoke, ok_json, one_line_error
from tests.store_helpers import SENDER, seed_account, seed_campaign
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.store import accounts, api_keys, connections
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.secrets import SecretBox, generate_secret_key

TOKEN = "EAAG-cli-token-never-echoed"
SECRET_KEY = generate_secret_key()


def env(db: Database, **extra: str) -> dict[str, str]:
    return {
        "CAMPAIGNS_DATABASE_URL": db.url,
        "CAMPAIGNS_PROVIDER": "sandbox",
        "CAMPAIGNS_SECRET_KEY": SECRET_KEY,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
    } | extra


def test_accounts_create_then_show_as_json(db: Database) -> None:
    created = ok_json(invoke(["accounts", "create", "acme", "--name", "Acme", "--json"], env(db)))
    assert (created["id"], created["connected"]) == ("acme", False)
    shown = ok_json(invoke(["accounts", "show", "acme", "--json"], env(db)))
    assert shown["name"] == "Acme"


def test_accounts_create_twice_is_one_line(db: Database) -> None:
    invoke(["accounts", "create", "acme", "--name", "Acme"], env(db))
    line = one_line_error(invoke(["accounts", "create", "acme", "--name", "Acme"], env(db)))
    assert "account acme exists already" in line


def test_accounts_show_of_an_unknown_account_names_it(db: Database) -> None:
    assert "account nobody not found" in one_line_error(
        invoke(["accounts", "show", "nobody"], env(db))
    )


def test_accounts_connect_reads_the_token_from_stdin_and_never_prints_it(db: Database) -> None:
    seed_account(db, "acme")
    result = invoke(
        ["accounts", "connect", "acme", "--waba-id", "sandbox", "--json"],
        env(db),
        stdin=TOKEN + "\n",
    )
    shown = ok_json(result)
    assert shown["connected"] is True and shown["waba_id"] == "sandbox"
    assert TOKEN not in result.output
    listed = invoke(["accounts", "list", "--json"], env(db))
    assert TOKEN not in listed.output
    credentials = connections.get_credentials(db, SecretBox(SECRET_KEY), "acme")
    assert credentials is not None and credentials.access_token == TOKEN


def test_accounts_connect_reads_the_token_from_a_named_variable(db: Database) -> None:
    seed_account(db, "acme")
    result = invoke(
        ["accounts", "connect", "acme", "--waba-id", "sandbox", "--token-env", "ACME_TOKEN"],
        env(db, ACME_TOKEN=TOKEN),
    )
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output


def test_accounts_connect_without_a_token_is_refused(db: Database) -> None:
    seed_account(db, "acme")
    line = one_line_error(
        invoke(["accounts", "connect", "acme", "--waba-id", "sandbox"], env(db), stdin="\n")
    )
    assert "no access token" in line


def test_accounts_connect_without_a_secret_key_stores_nothing(db: Database) -> None:
    seed_account(db, "acme")
    result = invoke(
        ["accounts", "connect", "acme", "--waba-id", "sandbox"],
        env(db, CAMPAIGNS_SECRET_KEY=""),
        stdin=TOKEN,
    )
    assert "CAMPAIGNS_SECRET_KEY is not set" in one_line_error(result)
    assert connections.get_credentials(db, SecretBox(SECRET_KEY), "acme") is None


def test_accounts_connect_to_an_unknown_waba_shows_metas_error(db: Database) -> None:
    seed_account(db, "acme")
    result = invoke(
        ["accounts", "connect", "acme", "--waba-id", "no-such-waba"], env(db), stdin=TOKEN
    )
    line = one_line_error(result)
    assert "WhatsApp refused the access token" in line and "(code 100)" in line
    assert connections.get_credentials(db, SecretBox(SECRET_KEY), "acme") is None


def test_accounts_secret_key_prints_a_usable_key() -> None:
    result = invoke(["accounts", "secret-key"], {})
    assert result.exit_code == 0
    SecretBox(result.stdout.strip())  # a valid Fernet key, or this raises


# ----------------------------------------------------------------------------- senders


def test_senders_add_reads_the_number_from_meta(db: Database) -> None:
    seed_account(db, "acme")
    added = ok_json(
        invoke(["senders", "add", "sandbox-sender-high", "--account", "acme", "--json"], env(db))
    )
    assert (added["rate_per_second"], added["throughput_level"]) == (1000, "HIGH")
    assert added["display_number"] == "+12025550150"
    listed = ok_json(invoke(["senders", "list", "--account", "acme", "--json"], env(db)))
    assert "sandbox-sender-high" in {s["phone_number_id"] for s in listed}


def test_senders_add_with_a_rate_caps_it(db: Database) -> None:
    seed_account(db, "acme")
    args = ["senders", "add", "sandbox-sender-high", "--account", "acme", "--rate", "300"]
    added = ok_json(invoke([*args, "--json"], env(db)))
    assert added["rate_per_second"] == 300


def test_senders_add_of_an_unknown_number_shows_metas_code(db: Database) -> None:
    seed_account(db, "acme")
    line = one_line_error(invoke(["senders", "add", "nope", "--account", "acme"], env(db)))
    assert "phone number id nope" in line and "(code 100)" in line
    assert ok_json(invoke(["senders", "list", "--account", "acme", "--json"], env(db))) == [
        s
        for s in ok_json(invoke(["senders", "list", "--account", "acme", "--json"], env(db)))
        if s["phone_number_id"] != "nope"
    ]


def test_senders_add_of_another_accounts_number_is_refused(db: Database) -> None:
    seed_account(db, "acme")
    seed_account(db, "beta")
    invoke(["senders", "add", "sandbox-sender-1", "--account", "acme"], env(db))
    line = one_line_error(
        invoke(["senders", "add", "sandbox-sender-1", "--account", "beta"], env(db))
    )
    assert "registered to another account" in line


def test_senders_add_to_an_unknown_account_names_it(db: Database) -> None:
    line = one_line_error(
        invoke(["senders", "add", "sandbox-sender-1", "--account", "zed"], env(db))
    )
    assert "zed" in line


def test_senders_remove_is_refused_while_a_campaign_uses_it(db: Database) -> None:
    seed_account(db)  # acme, with acme-sender-1
    campaign_id = seed_campaign(db, status=CampaignStatus.SCHEDULED)
    line = one_line_error(invoke(["senders", "remove", SENDER], env(db)))
    assert campaign_id in line


def test_senders_sync_rereads_every_number(db: Database) -> None:
    accounts.create_account(db, "acme", "Acme")  # no number yet
    invoke(["senders", "add", "sandbox-sender-1", "--account", "acme", "--rate", "10"], env(db))
    synced = ok_json(invoke(["senders", "sync", "--account", "acme", "--json"], env(db)))
    by_id = {s["phone_number_id"]: s for s in synced}
    assert by_id["sandbox-sender-1"]["rate_per_second"] == 10  # the cap is kept
    assert by_id["sandbox-sender-1"]["verified_name"] == "Sandbox Store"


# -------------------------------------------------------------------------------- keys


def test_keys_create_prints_the_key_once_and_stores_a_digest(db: Database) -> None:
    seed_account(db, "acme")
    issued = ok_json(
        invoke(["keys", "create", "--account", "acme", "--role", "operator", "--json"], env(db))
    )
    assert set(issued) == {"id", "key", "account", "role"}
    assert (issued["account"], issued["role"]) == ("acme", "operator")
    found = api_keys.authenticate(db, issued["key"])
    assert found is not None and found.id == issued["id"]
    listed = invoke(["keys", "list", "--account", "acme", "--json"], env(db))
    assert issued["key"] not in listed.output
    assert [k["id"] for k in json.loads(listed.stdout)] == [issued["id"]]


def test_keys_create_with_an_unknown_role_is_refused(db: Database) -> None:
    seed_account(db, "acme")
    result = invoke(["keys", "create", "--account", "acme", "--role", "owner"], env(db))
    assert result.exit_code != 0
    assert "owner" in result.output


def test_keys_revoke_ends_a_key(db: Database) -> None:
    seed_account(db, "acme")
    issued = ok_json(
        invoke(["keys", "create", "--account", "acme", "--role", "viewer", "--json"], env(db))
    )
    revoked = ok_json(invoke(["keys", "revoke", issued["id"], "--json"], env(db)))
    assert revoked["revoked_at"] is not None
    assert api_keys.authenticate(db, issued["key"]) is None


@pytest.mark.parametrize(
    "args",
    [["keys", "revoke", "nope"], ["keys", "create", "--account", "zed", "--role", "viewer"]],
)
def test_keys_of_unknown_objects_are_one_line(db: Database, args: list[str]) -> None:
    assert "not found" in one_line_error(invoke(args, env(db)))


@pytest.mark.parametrize("command", [["worker"], ["api", "--port", "1"]])
def test_a_process_with_a_stored_token_and_no_secret_key_stops_at_start_up(
    db: Database, command: list[str]
) -> None:
    seed_account(db, "acme")
    connections.connect_account(db, SecretBox(SECRET_KEY), "acme", waba_id="w", access_token=TOKEN)
    result = invoke(command, env(db, CAMPAIGNS_SECRET_KEY=""))
    assert result.exit_code == 1
    assert "CAMPAIGNS_SECRET_KEY is not set: cannot decrypt the access token of account acme" in (
        result.stderr
    )
    assert TOKEN not in result.output
