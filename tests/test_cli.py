"""The CLI without Temporal: bad input, templates, the `api` and `sandbox` servers (real
subprocesses: signed webhooks from one to the other, API keys), and the dev stack's own checks.

The commands that steer campaigns are tested on a real dev server in test_cli_e2e.py."""

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cli_helpers import (
    CAMPAIGNS,
    free_port,
    invoke,
    ok_json,
    one_line_error,
    serving,
    subprocess_env,
    write_audience_csv,
)
from tests.webhook_helpers import seed_messages
from whatsapp_campaigns.demo import MAGIC_NUMBERS, demo_phone_numbers, write_demo_audience
from whatsapp_campaigns.devstack import StackOptions, stack_settings
from whatsapp_campaigns.domain.phones import normalize_phone
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, seed_sandbox
from whatsapp_campaigns.whatsapp.cloud import CloudApiProvider
from whatsapp_campaigns.whatsapp.components import template_components
from whatsapp_campaigns.whatsapp.provider import TemplateSend
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES


def store_env(db: Database) -> dict[str, str]:
    return {"CAMPAIGNS_DATABASE_URL": db.url, "CAMPAIGNS_PROVIDER": "sandbox"}


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["schedule", "c1", "--at", "tomorrow"], "--at: 'tomorrow' is not an ISO 8601 time"),
        (["schedule", "c1", "--at", "2026-12-01T09:00:00"], "has no UTC offset"),
        (["schedule", "c1", "--at", "2026-13-01T09:00:00+00:00"], "is not an ISO 8601 time"),
        (["schedule", "c1"], "give exactly one of --at TIME or --now"),
        (["schedule", "c1", "--now", "--at", "2026-12-01T09:00:00Z"], "give exactly one of"),
        (["reschedule", "c1", "--at", "next monday"], "--at: 'next monday' is not an ISO 8601"),
        (["list", "--since", "yesterday"], "--since: 'yesterday' is not an ISO 8601 time"),
    ],
)
def test_a_malformed_time_is_one_line_and_a_non_zero_exit(args: list[str], expected: str) -> None:
    # TEMPORAL_ADDRESS points nowhere: the time is refused before anything is contacted.
    line = one_line_error(invoke(args, {"TEMPORAL_ADDRESS": "127.0.0.1:1"}))
    assert expected in line


def test_an_unknown_campaign_in_report_is_one_line(db: Database) -> None:
    line = one_line_error(invoke(["report", "nope"], store_env(db)))
    assert "nope" in line and "not found" in line


# ------------------------------------------------------------------------------ templates


def test_templates_sync_then_list(db: Database) -> None:
    seed_sandbox(db)
    assert ok_json(invoke(["templates", "list", "--json"], store_env(db))) == []

    synced = ok_json(invoke(["templates", "sync", "--json"], store_env(db)))
    listed = ok_json(invoke(["templates", "list", "--json"], store_env(db)))

    assert synced["synced"] == len(SANDBOX_TEMPLATES)
    assert sorted(synced["templates"], key=lambda t: t["name"]) == sorted(
        listed, key=lambda t: t["name"]
    )
    statuses = {t["name"]: t["status"] for t in listed}
    assert statuses == {
        "order_update": "APPROVED",
        "spring_sale": "APPROVED",
        "promo_pending": "PENDING",
        "promo_paused": "PAUSED",
        "promo_media": "APPROVED",
        "appointment_reminder": "APPROVED",
    }
    order_update = next(t for t in listed if t["name"] == "order_update")
    assert order_update["variables"] == ["name", "order_id"]


def test_templates_list_shows_a_table(db: Database) -> None:
    seed_sandbox(db)
    invoke(["templates", "sync"], store_env(db))
    result = invoke(["templates", "list"], store_env(db))
    assert result.exit_code == 0
    assert "promo_pending" in result.stdout and "PENDING" in result.stdout
    assert "image" in result.stdout  # promo_media's image header


def test_templates_sync_for_an_unknown_account_is_one_line(db: Database) -> None:
    line = one_line_error(invoke(["templates", "sync", "--account", "ghost"], store_env(db)))
    assert line == "error: account ghost not found"


# ------------------------------------------------------- store commands, Temporal down

TEMPORAL_DOWN = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}  # a closed port


def test_audience_import_runs_without_temporal(db: Database, tmp_path: Path) -> None:
    seed_sandbox(db)
    csv_path = write_audience_csv(tmp_path / "a.csv", ["+12025550181", "+12025550182", "x"])
    args = ["audience", "import", str(csv_path), "--name", "spring", "--json"]
    args += ["--account", SANDBOX_ACCOUNT_ID]
    imported = ok_json(invoke(args, store_env(db) | TEMPORAL_DOWN))
    assert (imported["valid"], imported["invalid"]) == (2, 1)


def test_a_file_that_cannot_be_imported_is_one_line_without_temporal(
    db: Database, tmp_path: Path
) -> None:
    seed_sandbox(db)
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"PK\x03\x04 not a csv")
    args = ["audience", "import", str(path), "--name", "x", "--account", SANDBOX_ACCOUNT_ID]
    assert "Excel workbook" in one_line_error(invoke(args, store_env(db) | TEMPORAL_DOWN))


def test_templates_list_runs_without_temporal(db: Database) -> None:
    seed_sandbox(db)
    invoke(["templates", "sync"], store_env(db))
    listed = ok_json(invoke(["templates", "list", "--json"], store_env(db) | TEMPORAL_DOWN))
    assert len(listed) == len(SANDBOX_TEMPLATES)


def test_credits_run_without_temporal(db: Database) -> None:
    seed_sandbox(db)
    args = ["credits", "add", "5", "--account", SANDBOX_ACCOUNT_ID, "--json"]
    added = ok_json(invoke(args, store_env(db) | TEMPORAL_DOWN))
    args = ["credits", "show", "--account", SANDBOX_ACCOUNT_ID, "--json"]
    assert ok_json(invoke(args, store_env(db) | TEMPORAL_DOWN)) == added


def test_report_runs_without_temporal(db: Database) -> None:
    seed_messages(db, 2)
    result = invoke(["report", "c1"], store_env(db) | TEMPORAL_DOWN)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3  # header and two messages


# ------------------------------------------------- `campaigns api` and `campaigns sandbox`


def test_api_and_sandbox_servers_with_api_keys_and_signed_webhooks(db: Database) -> None:
    """The two serving commands as an operator runs them: the sandbox posts its status
    webhooks, signed with the shared secret, to the API, which accepts them (and records their
    lag); the REST routes want a known key."""
    seed_sandbox(db)
    api_port, sandbox_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    env = subprocess_env(
        CAMPAIGNS_DATABASE_URL=db.url,
        CAMPAIGNS_API_KEYS="good-key",
        WHATSAPP_APP_SECRET="shared-secret",
    )
    api_args = ["api", "--port", str(api_port)]
    sandbox_args = ["sandbox", "--port", str(sandbox_port), "--webhook-delay", "0.05"]
    sandbox_args += ["--webhook-url", f"{api}/webhooks/whatsapp"]
    with (
        serving(api_args, env, f"{api}/healthz"),
        serving(sandbox_args, env, f"{sandbox}/v21.0/sandbox/message_templates"),
    ):
        wrong = httpx.get(f"{api}/campaigns", headers={"Authorization": "Bearer guess"})
        missing = httpx.get(f"{api}/campaigns")
        right = httpx.get(f"{api}/campaigns", headers={"Authorization": "Bearer good-key"})
        assert (wrong.status_code, wrong.json()) == (401, {"detail": "unknown or revoked API key"})
        assert (missing.status_code, missing.json()) == (401, {"detail": "missing bearer API key"})
        assert right.status_code == 200
        assert httpx.get(f"{api}/docs").status_code == 200
        assert httpx.get(f"{api}/healthz").json()["status"] == "ok"

        asyncio.run(_send_one(sandbox))
        # sent, delivered, read: three signed webhooks reach the API and are measured.
        deadline = time.monotonic() + 15
        while _webhook_lag_count(api) < 3:
            assert time.monotonic() < deadline, httpx.get(f"{api}/metrics").text[-2000:]
            time.sleep(0.2)


async def _send_one(sandbox_url: str) -> None:
    provider = CloudApiProvider(sandbox_url, "v21.0", "any-token")
    try:
        templates = await provider.list_templates("sandbox")
        spring_sale = next(t for t in templates if t.name == "spring_sale")
        message_id = await provider.send_template(
            TemplateSend(
                sender_phone_number_id="sandbox-sender-1",
                to="+12025551234",
                template="spring_sale",
                language="en",
                components=template_components(spring_sale, {"name": "Ana"}),
                biz_opaque_callback_data="cli-test-1",
            )
        )
        assert message_id.startswith("wamid.")
    finally:
        await provider.aclose()


def _webhook_lag_count(api: str) -> float:
    for line in httpx.get(f"{api}/metrics").text.splitlines():
        if line.startswith("campaigns_webhook_lag_seconds_count"):
            return float(line.split()[-1])
    return 0.0


# ---------------------------------------------------------------------- the dev stack


def test_dev_refuses_a_port_in_use_in_one_line(tmp_path: Path, db: Database) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [CAMPAIGNS, "dev", "--port", str(port), "--data-dir", str(tmp_path / "data")]
        args += ["--temporal-port", str(free_port()), "--ui-port", str(free_port())]
        done = subprocess.run(
            args,
            env=subprocess_env(CAMPAIGNS_DATABASE_URL=db.url),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: port {port} on 127.0.0.1 is in use (is a stack already running?); "
        "choose another with --port (the API)"
    ]


def test_the_stack_points_the_worker_at_the_sandbox_server() -> None:
    options = StackOptions(temporal_port=17233, ui_port=18233, sandbox_port=18001)
    settings = stack_settings(Settings(CAMPAIGNS_PROVIDER="sandbox"), options)
    assert settings.temporal_address == "127.0.0.1:17233"
    assert settings.provider == "cloud"
    assert settings.whatsapp_api_base_url == "http://127.0.0.1:18001"
    assert settings.whatsapp_access_token
    assert settings.whatsapp_business_account_id == "sandbox"


def test_with_json_a_native_write_to_stdout_goes_to_the_stack_log_not_the_json(
    tmp_path: Path,
) -> None:
    # The Temporal SDK core prints its warnings to the process's fd 1, past sys.stdout.
    log_file = tmp_path / "dev.log"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from whatsapp_campaigns.cli.app import print_json\n"
        "from whatsapp_campaigns.cli.stack import keep_stdout_for_json\n"
        f"keep_stdout_for_json(Path({str(log_file)!r}))\n"
        "os.write(1, b'WARN core: Task not found when completing\\n')\n"
        "print_json({'status': 'completed'})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": "completed"}
    assert "Task not found when completing" in log_file.read_text()


def test_the_demo_audience_has_every_magic_number_once_among_valid_numbers(
    tmp_path: Path,
) -> None:
    numbers = demo_phone_numbers(300)
    assert len(numbers) == len(set(numbers)) == 300
    assert set(MAGIC_NUMBERS) <= set(numbers)
    assert all(normalize_phone(n, "US") == n for n in numbers)
    positions = sorted(numbers.index(m) for m in MAGIC_NUMBERS)
    assert positions[-1] - positions[0] > 200  # spread out, not bunched together

    lines = write_demo_audience(tmp_path / "a.csv", 300).read_text().splitlines()
    assert lines[0] == "phone,name,order_id,button_0"  # button_0: promo_media's URL suffix
    assert len(lines) == 1 + 300 + 2  # plus one invalid row and one duplicate


def test_a_large_demo_audience_stays_distinct_and_valid() -> None:
    numbers = demo_phone_numbers(20_000)
    assert len(set(numbers)) == 20_000
    assert all(normalize_phone(n, "US") == n for n in numbers[::997])


def test_the_demo_audience_size_is_bounded() -> None:
    with pytest.raises(ValueError, match="between"):
        demo_phone_numbers(5)
