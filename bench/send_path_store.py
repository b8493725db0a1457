"""The send activity without Temporal: what a message costs the worker and the store.

Runs the project's `SendActivities.send_message` (claim, per-second admission, template,
components, a no-op WhatsApp call of `--call-seconds`, accepted id) `--window` at a time in
Temporal's `ActivityEnvironment`, for `--sends` messages of `--campaigns` campaigns on
`--numbers` numbers at 1,000 msg/s, store on PostgreSQL (or SQLite). Prints messages per
second (the send path's capacity, the Temporal server out of the way), the worker's CPU per
message, PostgreSQL's CPU per message (its processes, from /proc: nothing else may use the
server meanwhile), and the grouped transactions.

`--compare-with DIR` runs the same arm with the `whatsapp_campaigns` found in DIR (a `git
archive` of another commit) in every round, alternated, each arm in a process of its own: the
activity's interface is the same across versions, its store writes need not be.

    .venv/bin/python bench/send_path_store.py --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/send_path_store.py --postgres-url … --campaigns 16 --numbers 4 \
        --compare-with /tmp/old --repeat 3
"""

import argparse
import asyncio
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from temporal_bench import BENCH_DIR, code_environment, named_cpu_seconds


async def run_arm(args: argparse.Namespace) -> dict[str, object]:
    """One arm, in this process, with whichever `whatsapp_campaigns` is first on the path."""
    from number_admission import seed_arm, seed_store
    from scratch_store import migrated_store
    from temporalio.testing import ActivityEnvironment
    from throughput_worker import NoopProvider

    from whatsapp_campaigns.activities.sending import SendActivities
    from whatsapp_campaigns.domain.engine import SendMessageInput
    from whatsapp_campaigns.settings import Settings
    from whatsapp_campaigns.store.db import Database
    from whatsapp_campaigns.whatsapp.connections import AccountProviders
    from whatsapp_campaigns.whatsapp.provider import Provider

    backend = "postgres" if args.postgres_url else "sqlite"
    with migrated_store(backend, args.postgres_url) as url:
        db = Database(url)
        seed_store(db)
        ids: list[int] = []
        each = args.sends // args.campaigns
        for c in range(args.campaigns):
            _, campaign_ids = seed_arm(db, f"pn-bench-{c % args.numbers}", 1000, each, c * each)
            ids += campaign_ids
        providers = AccountProviders(
            Settings(CAMPAIGNS_DATABASE_URL=url),
            db,
            shared=cast(Provider, NoopProvider(args.call_seconds)),
        )
        activities = SendActivities(db, providers, reconcile_window=timedelta(seconds=30))
        room = asyncio.Semaphore(args.window)
        sent = 0

        async def send(message_id: int) -> None:
            nonlocal sent
            env = ActivityEnvironment()
            env.info = dataclasses.replace(env.info, workflow_id=None)
            async with room:
                result = await env.run(
                    activities.send_message, SendMessageInput(campaign_id="", message_id=message_id)
                )
            sent += result.status is not None

        store_cpu = named_cpu_seconds("postgres")
        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(send(i) for i in ids))
        seconds = time.monotonic() - started
        cpu, store_cpu = time.process_time() - cpu, named_cpu_seconds("postgres") - store_cpu
        transactions = activities.store_transactions
        db.dispose()
    return {
        "sends": len(ids),
        "sent": sent,
        "messages_per_second": round(len(ids) / seconds, 1),
        "worker_cpu_ms_per_message": round(cpu * 1000 / len(ids), 3),
        "postgres_cpu_ms_per_message": (
            round(store_cpu * 1000 / len(ids), 3) if args.postgres_url else None
        ),
        "writes_per_transaction": round(2 * len(ids) / max(1, transactions), 1),
    }


def arm_in_process(code: Path, argv: list[str]) -> dict[str, object]:
    """Run one arm in a child process with `code`'s whatsapp_campaigns first on the path."""
    out = subprocess.run(
        [sys.executable, __file__, "--arm", *argv],
        env=code_environment(code),
        check=True,
        capture_output=True,
        text=True,
        cwd=code,
    ).stdout
    return cast(dict[str, object], json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=8000, help="in all, split evenly")
    parser.add_argument("--campaigns", type=int, default=1)
    parser.add_argument("--numbers", type=int, default=1, help="sender numbers, 1,000 msg/s")
    parser.add_argument("--window", type=int, default=500, help="sends in flight at once")
    parser.add_argument("--call-seconds", type=float, default=0.02, help="the no-op WhatsApp")
    parser.add_argument("--postgres-url", default=None, help="the store on PostgreSQL")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, arms alternated")
    parser.add_argument(
        "--compare-with",
        type=Path,
        action="append",
        default=[],
        help="a folder holding another whatsapp_campaigns: its arm runs in every round",
    )
    parser.add_argument("--arm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(asyncio.run(run_arm(args))))
        return
    argv = _without_option(sys.argv[1:], "--compare-with")
    argv = _without_option(argv, "--repeat")
    codes = [("this", BENCH_DIR.parent)] + [(str(p), p.resolve()) for p in args.compare_with]
    results: dict[str, list[dict[str, object]]] = {name: [] for name, _ in codes}
    for round_ in range(1, args.repeat + 1):
        for name, code in codes:
            outcome = arm_in_process(code, argv)
            results[name].append(outcome)
            print(f"round {round_}, {name}: {json.dumps(outcome)}", flush=True)
    summary = {
        name: {
            key: statistics.median(cast(float, r[key]) for r in runs)
            for key in ("messages_per_second", "worker_cpu_ms_per_message")
        }
        for name, runs in results.items()
    }
    print(json.dumps({"medians": summary}, indent=2))


def _without_option(argv: list[str], option: str) -> list[str]:
    """`argv` without `option` and its value (either `--x v` or `--x=v`)."""
    kept: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(f"{option}="):
            kept.append(item)
    return kept


if __name__ == "__main__":
    main()
