"""The CLI for templates with media, buttons and fixed values (SPEC §10): `create --var`,
`--skip-invalid`, the per-rule report before anything is sent, and `preview ID [--row N]`.

`create` and `schedule` connect to Temporal (a real dev server here; no worker is needed:
nothing is sent); `preview` reads only the store."""

from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.cli_helpers import invoke_async, ok_json, one_line_error
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.audiences import import_audience_csv
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES

pytestmark = pytest.mark.e2e

IMAGE = "https://cdn.example.com/spring.jpg"
GOOD_AND_BAD = (
    "phone,name,button_0\n"
    "+12025550110,Ana,ana-1\n"  # row 2
    "+12025550111,Bo,bo 2\n"  # row 3: a URL suffix with a space
)


@pytest.fixture
def env(dev_server: WorkflowEnvironment, db: Database) -> dict[str, str]:
    seed_sandbox(db)
    catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)
    return {
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "CAMPAIGNS_DATABASE_URL": db.url,
        "CAMPAIGNS_PROVIDER": "sandbox",
    }


def audience(db: Database, tmp_path: Path, csv_text: str) -> str:
    path = tmp_path / "audience.csv"
    path.write_text(csv_text)
    return import_audience_csv(db, SANDBOX_ACCOUNT_ID, "promo", path).audience.id


def create_args(audience_id: str, *extra: str) -> list[str]:
    return [
        "create",
        *("--name", "spring", "--template", "promo_media", "--audience", audience_id),
        *("--sender", SANDBOX_SENDER.phone_number_id, *extra),
    ]


async def create_promo(env: dict[str, str], audience_id: str) -> dict[str, Any]:
    """`campaigns create` of promo_media with the image as a fixed value: its JSON."""
    args = create_args(audience_id, "--var", f"header_media={IMAGE}", "--json")
    created: dict[str, Any] = ok_json(await invoke_async(args, env))
    return created


async def test_create_stores_the_vars_and_reports_the_invalid_rows_by_rule(
    env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    audience_id = audience(db, tmp_path, GOOD_AND_BAD)

    created = ok_json(
        await invoke_async(
            create_args(audience_id, "--var", f"header_media={IMAGE}", "--json"), env
        )
    )

    assert created["variables"] == {"header_media": IMAGE}
    assert created["invalid_values"]["by_rule"] == {"url_suffix": 1}
    assert created["invalid_values"]["first_rows"][0]["row"] == 3


async def test_schedule_is_refused_with_the_rules_and_rows_until_skip_invalid(
    env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    audience_id = audience(db, tmp_path, GOOD_AND_BAD)
    created = ok_json(
        await invoke_async(
            create_args(audience_id, "--var", f"header_media={IMAGE}", "--json"), env
        )
    )

    refused = await invoke_async(["schedule", created["id"], "--at", "2030-01-01T09:00:00Z"], env)

    assert refused.exit_code == 1
    assert "url_suffix" in refused.stderr and "+12025550111" in refused.stderr
    assert "1 of 2 recipients have invalid template values" in refused.stderr


async def test_an_unknown_var_name_is_one_line_naming_it(
    env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    audience_id = audience(db, tmp_path, GOOD_AND_BAD)

    line = one_line_error(await invoke_async(create_args(audience_id, "--var", "nmae=Ana"), env))

    assert "no variable 'nmae'" in line


async def test_a_var_without_equals_is_one_line(env: dict[str, str]) -> None:
    line = one_line_error(await invoke_async(create_args("a1", "--var", "header_media"), env))
    assert "--var 'header_media': expected KEY=VALUE" in line


async def test_preview_shows_the_message_of_a_row_and_the_rules_it_breaks(
    env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    audience_id = audience(db, tmp_path, GOOD_AND_BAD)
    created = ok_json(
        await invoke_async(
            create_args(audience_id, "--var", f"header_media={IMAGE}", "--json"), env
        )
    )

    shown = await invoke_async(["preview", created["id"]], env)
    row_3 = await invoke_async(["preview", created["id"], "--row", "3"], env)
    as_json = ok_json(await invoke_async(["preview", created["id"], "--json"], env))

    assert shown.exit_code == 0
    assert IMAGE in shown.stdout and "Hi Ana, our spring collection" in shown.stdout
    assert "See your picks" in shown.stdout and "Not interested" in shown.stdout
    assert shown.stderr == ""
    assert "url_suffix button_0" in row_3.stderr and "'bo 2' is not URL-safe" in row_3.stderr
    assert as_json["message"]["buttons"][0]["target"] == "https://shop.example.com/picks/ana-1"
    assert as_json["row"] == 2 and as_json["problems"] == []


async def test_preview_of_a_row_that_is_no_recipient_is_one_line(
    env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    audience_id = audience(db, tmp_path, GOOD_AND_BAD)
    created = ok_json(
        await invoke_async(
            create_args(audience_id, "--var", f"header_media={IMAGE}", "--json"), env
        )
    )

    line = one_line_error(await invoke_async(["preview", created["id"], "--row", "9"], env))

    assert "row 9 is not a recipient" in line


async def test_create_with_partitions_sends_through_that_many_child_workflows(
    env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    audience_id = audience(db, tmp_path, GOOD_AND_BAD)

    created = ok_json(
        await invoke_async(
            create_args(
                audience_id, "--var", f"header_media={IMAGE}", "--partitions", "4", "--json"
            ),
            env,
        )
    )

    assert created["policy"]["send_partitions"] == 4


async def test_partitions_out_of_range_are_refused_before_anything_is_created(
    env: dict[str, str], db: Database, tmp_path: Path
) -> None:
    audience_id = audience(db, tmp_path, GOOD_AND_BAD)

    refused = await invoke_async(create_args(audience_id, "--partitions", "0"), env)

    assert refused.exit_code == 2
    assert "--partitions" in refused.stderr
