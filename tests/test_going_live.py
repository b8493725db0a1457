"""Going live (SPEC §9, issue 10): from an empty store to a completed campaign with the README's
"Going live with a real WhatsApp number" commands alone, run as real processes against the HTTP
sandbox (`campaigns sandbox`, which accepts only one access token, as Meta does), with
`campaigns api` receiving the status webhooks and `campaigns worker` sending; once through the
CLI and once through the REST API. Along the way the access token and the API key never leak:
not in any process's output, `--json` answer, workflow history or report, and the store holds
the token only encrypted.

Then the bad input of going live that tests/test_cli_accounts.py (in-process sandbox) leaves
out: an unknown account named by every going-live command, a WABA of another account, and Meta
(`campaigns sandbox` over HTTP) refusing the token or the number: its code and title shown,
nothing stored."""

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from temporalio.testing import WorkflowEnvironment

from tests.cli_helpers import (
    CAMPAIGNS,
    free_port,
    invoke,
    invoke_async,
    ok_json,
    one_line_error,
    serving,
    subprocess_env,
    write_audience_csv,
)
from tests.conftest import BACKENDS, POSTGRES_URL
from tests.engine_harness import ordinary_numbers
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import Base, WhatsAppConnection
from whatsapp_campaigns.store.secrets import SecretBox, generate_secret_key

SENDER = "sandbox-sender-1"  # the HTTP sandbox's fixture number (STANDARD throughput)
WABA = "sandbox"  # the sandbox's WhatsApp Business Account
TOKEN = "EAAG-go-live-system-user-token-7f3a9c"  # the one token the sandbox accepts
RECIPIENTS = 20
E2E_TIMEOUT = 60.0  # seconds for the campaign to finish once scheduled


# --------------------------------------------------------------------------- the stack


@pytest.fixture(params=BACKENDS)
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store with no tables at all (`campaigns db upgrade` makes them): a new SQLite file,
    or a new PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'campaigns.db'}"
        return
    assert POSTGRES_URL
    schema = f"golive_{uuid.uuid4().hex[:10]}"
    admin = Database(POSTGRES_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Stack:
    """The production-style processes of one going-live run, and everything they said."""

    def __init__(
        self, tmp_path: Path, dev_server: WorkflowEnvironment, store_url: str, secret_key: str
    ) -> None:
        self.tmp_path = tmp_path
        self.outputs: dict[str, str] = {}  # what each process printed, by a label
        self.api_port, self.sandbox_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        target: str = dev_server.client.service_client.config.target_host
        self.env = subprocess_env(
            CAMPAIGNS_DATABASE_URL=store_url,
            CAMPAIGNS_SECRET_KEY=secret_key,
            CAMPAIGNS_PROVIDER="cloud",
            WHATSAPP_API_BASE_URL=self.sandbox_url,
            TEMPORAL_ADDRESS=target,
            CAMPAIGNS_TASK_QUEUE=f"golive-{uuid.uuid4().hex[:8]}",
        )
        self._logs: list[Path] = []

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`campaigns ARGS` as a subprocess that must succeed; its output is kept."""
        done = subprocess.run(
            [CAMPAIGNS, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        label = f"campaigns {' '.join(args)} #{len(self.outputs)}"
        self.outputs[label] = done.stdout + done.stderr
        assert done.returncode == 0, f"{label}: {done.stdout}{done.stderr}"
        return done

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.run(*args, "--json", stdin=stdin).stdout)

    async def invoke_json(self, *args: str) -> Any:
        """`campaigns ARGS --json` in this process, with the same environment; output kept."""
        result = await invoke_async([*args, "--json"], self.env)
        self.outputs[f"campaigns {' '.join(args)} --json (in-process)"] = result.output
        return ok_json(result)

    def serve(self, name: str, args: list[str], ready: str, **env: str) -> Any:
        """A long-running `campaigns` process, its output kept in a file read at the end."""
        log = self.tmp_path / f"{name}.log"
        self._logs.append(log)
        return serving(args, self.env | env, ready, output=log)

    def sandbox(self) -> Any:
        """Only TOKEN opens it; its status webhooks go to the API."""
        return self.serve(
            "sandbox",
            [
                *("sandbox", "--port", str(self.sandbox_port)),
                *("--accept-token-env", "SANDBOX_TOKEN"),
                *("--webhook-url", f"{self.api_url}/webhooks/whatsapp", "--webhook-delay", "0.05"),
            ],
            f"{self.sandbox_url}/docs",
            SANDBOX_TOKEN=TOKEN,
        )

    def api(self, **env: str) -> Any:
        return self.serve(
            "api", ["api", "--port", str(self.api_port)], f"{self.api_url}/healthz", **env
        )

    def worker(self) -> Any:
        """Started once the sender exists: a worker serves the numbers it finds at start-up."""
        metrics = free_port()
        return self.serve(
            "worker",
            ["worker"],
            f"http://127.0.0.1:{metrics}/metrics",
            CAMPAIGNS_WORKER_METRICS_PORT=str(metrics),
        )

    def all_output(self) -> dict[str, str]:
        """Every command's output and every server's log (read once they have stopped)."""
        logs = {log.name: log.read_text(errors="replace") for log in self._logs}
        return self.outputs | logs


@pytest.fixture
def stack(tmp_path: Path, dev_server: WorkflowEnvironment, empty_store_url: str) -> Stack:
    # The README's first step: a key for CAMPAIGNS_SECRET_KEY, printed by the CLI.
    made = subprocess.run(
        [CAMPAIGNS, "accounts", "secret-key"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return Stack(tmp_path, dev_server, empty_store_url, made.stdout.strip())


def wait_until_finished(progress: Any) -> dict[str, Any]:
    """Poll `progress()` (bounded) until the campaign reaches a final status."""
    deadline = time.monotonic() + E2E_TIMEOUT
    while True:
        current: dict[str, Any] = progress()
        if current["status"] in ("completed", "failed", "cancelled"):
            return current
        assert time.monotonic() < deadline, f"not finished in {E2E_TIMEOUT} s: {current}"
        time.sleep(0.5)


def assert_all_accepted(final: dict[str, Any]) -> None:
    assert final["status"] == "completed", final
    assert final["total"] == RECIPIENTS
    assert sum(final["counts"].values()) == RECIPIENTS
    # Every message has a WhatsApp message id: sent, then delivered and read by webhook.
    assert set(final["counts"]) <= {"sent", "delivered", "read"}, final["counts"]


async def history_bytes(dev_server: WorkflowEnvironment, campaign_id: str) -> bytes:
    """The campaign workflow's whole history, payloads as the raw bytes they were stored as."""
    handle = dev_server.client.get_workflow_handle(f"campaign-{campaign_id}")
    history = await handle.fetch_history()
    data = b"".join(event.SerializeToString() for event in history.events)
    assert campaign_id.encode() in data  # the search below reads the payloads
    return data


def assert_stored_encrypted_only(store_url: str, secret_key: str, *secrets: str) -> None:
    """No table holds a secret in plain text; the token is there, encrypted with the key."""
    db = Database(store_url)
    try:
        with db.session() as session:
            for table in Base.metadata.sorted_tables:
                rows = session.execute(select(table)).all()
                dumped = json.dumps([list(row) for row in rows], default=str)
                for secret in secrets:
                    assert secret not in dumped, f"{table.name} holds a secret in plain text"
            connection = session.scalars(select(WhatsAppConnection)).one()
        stored = SecretBox(secret_key).decrypt(connection.access_token_encrypted, what="token")
        assert stored == TOKEN
    finally:
        db.dispose()


def assert_not_in_outputs(outputs: dict[str, str], secret: str, *, but: str = "") -> None:
    leaked = [label for label, said in outputs.items() if secret in said and label != but]
    assert leaked == [], f"secret printed by {leaked}"


# ------------------------------------------------------------------- going live: the CLI


@pytest.mark.e2e
async def test_from_an_empty_store_to_a_completed_campaign_with_the_cli_alone(
    stack: Stack, dev_server: WorkflowEnvironment, empty_store_url: str, tmp_path: Path
) -> None:
    customers = write_audience_csv(tmp_path / "customers.csv", ordinary_numbers(RECIPIENTS))
    stack.run("db", "upgrade")
    with stack.sandbox(), stack.api():
        stack.run("accounts", "create", "acme", "--name", "Acme Inc.")
        connected = stack.json("accounts", "connect", "acme", "--waba-id", WABA, stdin=TOKEN)
        assert (connected["waba_id"], connected["connected"]) == (WABA, True)
        sender = stack.json("senders", "add", SENDER, "--account", "acme")
        assert (sender["throughput_level"], sender["rate_per_second"]) == ("STANDARD", 80)
        synced = stack.json("templates", "sync", "--account", "acme")
        assert "order_update" in {t["name"] for t in synced["templates"]}
        stack.run("credits", "add", "1000", "--account", "acme")
        key = stack.json("keys", "create", "--account", "acme", "--role", "operator")
        key_label = list(stack.outputs)[-1]
        assert (key["account"], key["role"]) == ("acme", "operator")
        audience = stack.json(
            "audience", "import", str(customers), "--name", "Customers", "--account", "acme"
        )
        assert audience["valid"] == RECIPIENTS
        created = stack.json(
            *("create", "--name", "First campaign", "--template", "order_update"),
            *("--audience", audience["id"], "--sender", SENDER, "--account", "acme"),
        )
        campaign_id = created["id"]
        with stack.worker():
            assert stack.json("schedule", campaign_id, "--now")["status"] == "scheduled"
            stack.run("watch", campaign_id, "--interval", "0.5")  # returns when it ends
            # What an operator checks next, in this process (a subprocess costs seconds of CPU).
            final = await stack.invoke_json("status", campaign_id)
        for read in (["accounts", "show", "acme"], ["accounts", "list"], ["keys", "list"]):
            await stack.invoke_json(*read)

    assert_all_accepted(final)
    balance = (await stack.invoke_json("credits", "show", "--account", "acme"))["balance"]
    assert balance == 1000 - RECIPIENTS  # one credit per accepted message
    report = tmp_path / "report.csv"
    stack.outputs["report"] = invoke(
        ["report", campaign_id, "--out", str(report)], stack.env
    ).output
    report_text = report.read_text()
    assert len(report_text.splitlines()) == RECIPIENTS + 1

    # The secrets never leak. The key is printed once, by `keys create`: that is how one gets it.
    assert key["key"] in stack.outputs[key_label]
    outputs = stack.all_output()
    assert_not_in_outputs(outputs, TOKEN)
    assert_not_in_outputs(outputs, key["key"], but=key_label)
    history = await history_bytes(dev_server, campaign_id)
    for secret in (TOKEN, key["key"]):
        assert secret.encode() not in history
        assert secret not in report_text
    assert_stored_encrypted_only(
        empty_store_url, stack.env["CAMPAIGNS_SECRET_KEY"], TOKEN, key["key"]
    )


# -------------------------------------------------------------- going live: the REST API


@pytest.mark.e2e
async def test_from_an_empty_store_to_a_completed_campaign_through_rest(
    stack: Stack, dev_server: WorkflowEnvironment, empty_store_url: str, tmp_path: Path
) -> None:
    bootstrap = f"bootstrap-{uuid.uuid4().hex}"
    customers = write_audience_csv(tmp_path / "customers.csv", ordinary_numbers(RECIPIENTS))
    stack.run("db", "upgrade")
    answers: list[str] = []  # every REST answer's body

    def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
        response = client.request(method, path, **kwargs)
        answers.append(response.text)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    with stack.sandbox(), stack.api(CAMPAIGNS_API_KEYS=bootstrap):
        admin = httpx.Client(
            base_url=stack.api_url,
            headers={"Authorization": f"Bearer {bootstrap}"},
            timeout=30.0,  # a loaded test machine
        )
        with admin:
            call(admin, "POST", "/accounts", json={"id": "acme", "name": "Acme Inc."})
            connection = {"waba_id": WABA, "access_token": TOKEN}
            connected = call(admin, "PUT", "/accounts/acme/connection", json=connection)
            assert connected["connected"] is True
            credits = {"amount": 1000}
            call(admin, "POST", "/credits", json=credits, headers={"X-Account": "acme"})
            key = call(admin, "POST", "/keys", json={"account": "acme", "role": "operator"})
            key_answer = answers.pop()  # the one answer that holds the key, by design
        operator = httpx.Client(
            base_url=stack.api_url,
            headers={"Authorization": f"Bearer {key['key']}"},
            timeout=30.0,
        )
        with operator:
            sender = call(operator, "POST", "/senders", json={"phone_number_id": SENDER})
            assert (sender["account_id"], sender["rate_per_second"]) == ("acme", 80)
            call(operator, "POST", "/templates/sync")
            with customers.open("rb") as file:
                imported = call(
                    operator, "POST", "/audiences", files={"file": file}, data={"name": "Customers"}
                )
            draft = {
                "name": "First campaign",
                "template_name": "order_update",
                "audience_id": imported["audience"]["id"],
                "sender_phone_number_id": SENDER,
            }
            campaign_id = call(operator, "POST", "/campaigns", json=draft)["id"]
            with stack.worker():
                schedule = {"send_at": None}
                call(operator, "POST", f"/campaigns/{campaign_id}/schedule", json=schedule)
                final = wait_until_finished(
                    lambda: call(operator, "GET", f"/campaigns/{campaign_id}/progress")
                )
            report_text = operator.get(f"/campaigns/{campaign_id}/report.csv").text

    assert_all_accepted(final)
    assert key["key"] in key_answer
    outputs = stack.all_output() | {f"answer {i}": a for i, a in enumerate(answers)}
    assert_not_in_outputs(outputs, TOKEN)
    assert_not_in_outputs(outputs, key["key"])
    assert_not_in_outputs(outputs, bootstrap)
    history = await history_bytes(dev_server, campaign_id)
    for secret in (TOKEN, key["key"], bootstrap):
        assert secret.encode() not in history
        assert secret not in report_text
    assert_stored_encrypted_only(
        empty_store_url, stack.env["CAMPAIGNS_SECRET_KEY"], TOKEN, key["key"]
    )


# ------------------------------------------------------------------ bad input, in-process


@pytest.fixture(scope="module")
def meta() -> Iterator[str]:
    """`campaigns sandbox` playing Meta: it accepts TOKEN only. Yields its base URL."""
    port = free_port()
    args = ["sandbox", "--port", str(port), "--accept-token-env", "SANDBOX_TOKEN"]
    env = subprocess_env(SANDBOX_TOKEN=TOKEN)
    with serving(args, env, f"http://127.0.0.1:{port}/docs"):
        yield f"http://127.0.0.1:{port}"


def sandbox_env(db_url: str, **extra: str) -> dict[str, str]:
    """The CLI on a migrated store with the in-process sandbox (any token works)."""
    return {
        "CAMPAIGNS_DATABASE_URL": db_url,
        "CAMPAIGNS_PROVIDER": "sandbox",
        "CAMPAIGNS_SECRET_KEY": generate_secret_key(),
    } | extra


def meta_env(db_url: str, meta: str) -> dict[str, str]:
    """The CLI talking to the HTTP sandbox, as to graph.facebook.com."""
    return sandbox_env(db_url, CAMPAIGNS_PROVIDER="cloud", WHATSAPP_API_BASE_URL=meta)


def stored_connections(db_url: str) -> int:
    db = Database(db_url)
    try:
        with db.session() as session:
            return len(session.scalars(select(WhatsAppConnection)).all())
    finally:
        db.dispose()


def assert_not_connected(env: dict[str, str], db_url: str) -> None:
    shown = ok_json(invoke(["accounts", "show", "acme", "--json"], env))
    assert (shown["connected"], shown["waba_id"]) == (False, None)
    assert stored_connections(db_url) == 0


def create_acme(env: dict[str, str]) -> None:
    ok_json(invoke(["accounts", "create", "acme", "--name", "Acme Inc.", "--json"], env))


def test_an_unknown_account_is_named_by_every_going_live_command(db_url: str) -> None:
    env = sandbox_env(db_url)
    commands = [
        ["accounts", "show", "nope"],
        ["accounts", "connect", "nope", "--waba-id", WABA],
        ["senders", "add", SENDER, "--account", "nope"],
        ["templates", "sync", "--account", "nope"],
        ["credits", "add", "100", "--account", "nope"],
        ["keys", "create", "--account", "nope", "--role", "operator"],
    ]
    for command in commands:
        line = one_line_error(invoke(command, env, stdin=TOKEN))
        assert line == "error: account nope not found", command


def test_a_whatsapp_business_account_of_another_account_is_refused(db_url: str) -> None:
    env = sandbox_env(db_url)
    create_acme(env)
    ok_json(invoke(["accounts", "create", "globex", "--name", "Globex", "--json"], env))
    ok_json(invoke(["accounts", "connect", "acme", "--waba-id", WABA, "--json"], env, stdin=TOKEN))

    connect = ["accounts", "connect", "globex", "--waba-id", WABA]
    line = one_line_error(invoke(connect, env, stdin=TOKEN))
    assert line == f"error: WhatsApp Business Account {WABA} is connected to another account"
    assert ok_json(invoke(["accounts", "show", "globex", "--json"], env))["connected"] is False


def test_meta_refusing_the_token_shows_its_code_and_title_and_stores_nothing(
    db_url: str, meta: str
) -> None:
    env = meta_env(db_url, meta)
    create_acme(env)
    wrong = "EAAG-a-token-meta-never-issued"
    line = one_line_error(
        invoke(["accounts", "connect", "acme", "--waba-id", WABA], env, stdin=wrong)
    )
    assert line.startswith("error: WhatsApp refused the access token: Invalid OAuth access token")
    assert line.endswith("(code 190)")
    assert wrong not in line
    assert_not_connected(env, db_url)


def test_an_unknown_phone_number_id_shows_metas_code_and_stores_nothing(
    db_url: str, meta: str
) -> None:
    env = meta_env(db_url, meta)
    create_acme(env)
    ok_json(invoke(["accounts", "connect", "acme", "--waba-id", WABA, "--json"], env, stdin=TOKEN))

    line = one_line_error(invoke(["senders", "add", "no-such-number", "--account", "acme"], env))
    assert line.startswith("error: WhatsApp refused phone number id no-such-number: ")
    assert "Object with ID 'no-such-number' does not exist" in line
    assert line.endswith("(code 100)")
    assert ok_json(invoke(["senders", "list", "--account", "acme", "--json"], env)) == []
