"""Webhook ingest throughput: signed status webhooks posted by `wrk` (32 connections, one
thread; a Lua script cycles through pre-signed bodies) to one `campaigns api` process on
PostgreSQL, side by side with the bare FastAPI ceiling on this box (BENCH-NOTES.md): the same
uvicorn serving an endpoint that reads the body, checks the signature and parses the JSON, and
stores nothing.

    .venv/bin/python bench/webhook_ingest.py \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Phase 1 (throughput): `--runs` alternating runs of `--seconds` each against the bare endpoint
and the API; medians and their ratio. Phase 2 (latency of application): webhooks paced at about
`--paced-rate` a second (128 connections, each waiting between requests); the share of
payloads applied within 2 s of their receipt, from the API's
`campaigns_webhook_apply_delay_seconds` histogram, and the largest backlog age seen on
`/healthz`. Every message of the seeded campaign gets its sent, delivered and read webhook (the
bodies cycle, so later rounds are Meta-style duplicates).
"""

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.migrate import upgrade

SECRET = "bench-app-secret"
SENDER = "pn-bench"
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LUA = r"""
local bodies, signatures, n = {}, {}, 0
local counter = 0
function init(args)
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    n = n + 1
    signatures[n] = line:sub(1, tab - 1)
    bodies[n] = line:sub(tab + 1)
  end
  pace = tonumber(args[2]) or 0
end
function request()
  counter = counter % n + 1
  return wrk.format("POST", "/webhooks/whatsapp", {
    ["Content-Type"] = "application/json",
    ["X-Hub-Signature-256"] = signatures[counter],
  }, bodies[counter])
end
function delay()
  return pace
end
"""

BARE_APP = """
import hashlib, hmac, json
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
app = FastAPI()
SECRET = {secret!r}.encode()

@app.post("/webhooks/whatsapp")
async def receive(request: Request) -> JSONResponse:
    body = await request.body()
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
        return JSONResponse({{"detail": "invalid signature"}}, status_code=403)
    json.loads(body)
    return JSONResponse({{"received": True}})
"""


def seed(url: str, messages: int) -> list[str]:
    """An account, sender, audience and campaign with `messages` messages sent to WhatsApp;
    their provider ids."""
    now = datetime.now(UTC)
    db = Database(url)
    try:
        with db.transaction() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (id, name, credit_balance, created_at) VALUES "
                    "('bench', 'Bench', 0, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO sender_numbers (phone_number_id, account_id, display_number, "
                    "rate_per_second, tier) VALUES (:s, 'bench', '+12025550100', 80, 100000)"
                ),
                {"s": SENDER},
            )
            conn.execute(
                text(
                    "INSERT INTO audiences (id, account_id, name, valid, invalid, duplicates, "
                    "suppressed, variable_names, missing_variables, invalid_rows, created_at) "
                    "VALUES ('a1', 'bench', 'bench', 0, 0, 0, 0, '[]', '{}', '[]', :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO campaigns (id, account_id, name, template_name, language, "
                    "sender_phone_number_id, audience_id, status, timezone, policy, variables, "
                    "reserved_credits, charged_credits, run_number, created_at, updated_at) "
                    "VALUES ('c1', 'bench', 'bench', 'order_update', 'en', :s, 'a1', "
                    "'sending', 'UTC', '{}', '[]', 0, 0, 1, :now, :now)"
                ),
                {"s": SENDER, "now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO recipients (id, audience_id, phone_e164, variables, "
                    "suppressed) VALUES (:id, 'a1', :phone, '{}', false)"
                ),
                [{"id": n + 1, "phone": f"+1202{n:07d}"} for n in range(messages)],
            )
            conn.execute(
                text(
                    "INSERT INTO messages (campaign_id, recipient_id, phone_e164, status, "
                    "attempts, provider_message_id, sending_at) VALUES "
                    "('c1', :id, :phone, 'sending', 1, :pid, :now)"
                ),
                [
                    {"id": n + 1, "phone": f"+1202{n:07d}", "pid": f"wamid.bench.{n}", "now": now}
                    for n in range(messages)
                ],
            )
    finally:
        db.dispose()
    return [f"wamid.bench.{n}" for n in range(messages)]


def bodies_file(path: Path, provider_ids: list[str]) -> None:
    """One line per webhook: signature, tab, compact JSON body (sent, delivered, read)."""
    at = int(time.time())
    with path.open("w") as out:
        for status in ("sent", "delivered", "read"):
            for pid in provider_ids:
                body = json.dumps(
                    {
                        "object": "whatsapp_business_account",
                        "entry": [
                            {
                                "id": "waba",
                                "changes": [
                                    {
                                        "field": "messages",
                                        "value": {
                                            "messaging_product": "whatsapp",
                                            "metadata": {
                                                "display_phone_number": "12025550100",
                                                "phone_number_id": SENDER,
                                            },
                                            "statuses": [
                                                {
                                                    "id": pid,
                                                    "status": status,
                                                    "timestamp": str(at),
                                                    "recipient_id": "12020000000",
                                                }
                                            ],
                                        },
                                    }
                                ],
                            }
                        ],
                    },
                    separators=(",", ":"),
                )
                digest = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
                out.write(f"sha256={digest}\t{body}\n")


def serve(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args,
        env=os.environ | env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server on port {port} did not start")


def wrk(
    port: int, seconds: int, lua: Path, bodies: Path, pace_ms: int = 0, connections: int = 32
) -> float:
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}/webhooks/whatsapp",
            "--",
            str(bodies),
            str(pace_ms),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if non_2xx:
        print(f"  warning: {non_2xx.group(1)} non-2xx answers")
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    assert match, done.stdout
    return float(match.group(1))


# Connections of the paced phase: enough that the answer's own time (tens of ms on a loaded
# box) does not cap the offered rate below the target, as 32 did (at most 32 / latency).
PACED_CONNECTIONS = 128


def paced_delay(port: int, lua: Path, bodies: Path, rate: int) -> int:
    """Milliseconds each of the PACED_CONNECTIONS waits between requests so that they send
    about `rate` a second: one 3-second calibration run tells the time a request takes."""
    cycle_ms = PACED_CONNECTIONS * 1000 / rate
    measured = wrk(
        port, 3, lua, bodies, pace_ms=max(1, round(cycle_ms)), connections=PACED_CONNECTIONS
    )
    answer_ms = max(0.0, PACED_CONNECTIONS * 1000 / measured - cycle_ms)
    pace = max(1, round(cycle_ms - answer_ms))
    print(f"pacing: {measured:,.0f}/s at {round(cycle_ms)} ms, so {pace} ms between requests")
    return pace


def histogram(port: int, name: str) -> dict[str, float]:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    found = {}
    for line in metrics.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            assert le
            found[le.group(1)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            found["count"] = float(line.rsplit(" ", 1)[1])
    return found


def wait_applied(port: int, timeout: float = 120.0) -> float:
    """Seconds until /healthz reports no webhook waiting."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if httpx.get(f"http://127.0.0.1:{port}/healthz").json()["webhooks"]["waiting"] == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    raise SystemExit("the backlog did not drain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paced-rate", type=int, default=1000)
    parser.add_argument("--port", type=int, default=18411)
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = Database(args.postgres_url)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in args.postgres_url else "?"
    url = f"{args.postgres_url}{separator}options=-csearch_path%3D{schema}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        upgrade(url)
        provider_ids = seed(url, args.messages)
        with tempfile.TemporaryDirectory() as tmp:
            lua, bodies, bare = Path(tmp) / "post.lua", Path(tmp) / "bodies.tsv", Path(tmp)
            lua.write_text(LUA)
            bodies_file(bodies, provider_ids)
            (bare / "bare_receiver.py").write_text(BARE_APP.format(secret=SECRET))
            bare_port, api_port = args.port, args.port + 1
            processes.append(
                serve(
                    [
                        str(BIN / "uvicorn"),
                        "--app-dir",
                        str(bare),
                        "bare_receiver:app",
                        "--port",
                        str(bare_port),
                        "--no-access-log",
                        "--log-level",
                        "warning",
                    ],
                    {},
                    bare_port,
                )
            )
            processes.append(
                serve(
                    [str(BIN / "campaigns"), "api", "--port", str(api_port)],
                    {
                        "CAMPAIGNS_DATABASE_URL": url,
                        "WHATSAPP_APP_SECRET": SECRET,
                        "CAMPAIGNS_API_KEYS": "bench-key",
                    },
                    api_port,
                )
            )
            print(
                f"{platform.node()} {os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} "
                f"UTC; {args.messages:,} messages, {3 * args.messages:,} distinct bodies"
            )
            bare_rates, api_rates = [], []
            for run in range(args.runs):
                bare_rates.append(wrk(bare_port, args.seconds, lua, bodies))
                api_rates.append(wrk(api_port, args.seconds, lua, bodies))
                drained = wait_applied(api_port)
                print(
                    f"run {run + 1}: bare {bare_rates[-1]:,.0f}/s, API {api_rates[-1]:,.0f}/s "
                    f"(backlog drained {drained:.1f} s after the run)"
                )
            bare_median, api_median = statistics.median(bare_rates), statistics.median(api_rates)
            print(
                f"median: bare {bare_median:,.0f}/s, API {api_median:,.0f}/s = "
                f"{api_median / bare_median:.0%} of the bare ceiling"
            )

            # Paced: PACED_CONNECTIONS each waiting `pace` ms between requests (after the
            # answer, so the answer's own time is taken off the cycle 1,000/s leaves each one).
            pace = paced_delay(api_port, lua, bodies, args.paced_rate)
            before = histogram(api_port, "campaigns_webhook_apply_delay_seconds")
            worst_age = 0.0
            paced = subprocess.Popen(
                [
                    "wrk",
                    "-t1",
                    f"-c{PACED_CONNECTIONS}",
                    f"-d{args.seconds}s",
                    "-s",
                    str(lua),
                    f"http://127.0.0.1:{api_port}/webhooks/whatsapp",
                    "--",
                    str(bodies),
                    str(pace),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            while paced.poll() is None:
                health = httpx.get(f"http://127.0.0.1:{api_port}/healthz").json()
                worst_age = max(worst_age, health["webhooks"]["oldest_seconds"])
                time.sleep(0.2)
            out = paced.stdout.read() if paced.stdout else ""
            rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
            wait_applied(api_port)
            after = histogram(api_port, "campaigns_webhook_apply_delay_seconds")
            count = after["count"] - before["count"]
            within = after["2.0"] - before["2.0"]
            print(
                f"paced at {float(rate.group(1)) if rate else 0:,.0f}/s: "
                f"{within / count:.2%} of {count:,.0f} applied within 2 s of receipt; "
                f"oldest waiting payload seen {worst_age:.2f} s"
            )
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
