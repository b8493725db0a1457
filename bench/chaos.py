"""The chaos suite: one campaign on the real multi-process stack while faults are played on it,
and what it survived, per fault.

    make chaos            # 20,000 recipients, PostgreSQL at BENCH_POSTGRES_URL
    .venv/bin/python bench/chaos.py --recipients 20000 \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/chaos.py --soak      # 100,000 recipients

The stack: `temporal server start-dev --db-filename` (a file store, so a SIGKILL and restart
keeps the workflows), `campaigns sandbox` over HTTP posting signed status webhooks to
`campaigns api`, `--workers` `campaigns worker` processes sending through the Cloud API
client, and a private PostgreSQL schema as the store (dropped afterwards; SQLite without
`--postgres-url`). The faults, in order, as the campaign progresses: a worker SIGKILLed,
Temporal SIGKILLed and restarted, the store's PostgreSQL connections terminated, the API
SIGKILLed and restarted while webhooks flow, a burst of WhatsApp 503s, answers lost after
WhatsApp accepted the send (a gateway's 502), webhooks duplicated / reordered / delayed /
dropped then retried, and every worker SIGKILLed at once.

Prints a Markdown table per fault: messages lost (never accepted by WhatsApp and not reported
failed), recipients messaged twice (WhatsApp accepted two messages for them), messages failed
(reported, after their retries), messages not in a final status once the campaign ended, the
busiest calendar second of accepted sends against the sender's rate, and the recovery time
(seconds until sends flowed again at half the pace of the 10 s before the fault). Exits 1 if
the promise (0 lost, 0 twice, all final, campaign completed) was broken.
"""

import argparse
import asyncio
import logging
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import OperationalError

from whatsapp_campaigns.chaos.faults import DEFAULT_SCHEDULE, FAULTS
from whatsapp_campaigns.chaos.figures import table
from whatsapp_campaigns.chaos.run import ChaosError, ChaosOptions, run_chaos
from whatsapp_campaigns.processes import ProcessError

SOAK_RECIPIENTS = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--soak", action="store_true", help=f"{SOAK_RECIPIENTS:,} recipients")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=80.0, help="the sender's messages/s")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL"),
        help="PostgreSQL server for the store's private schema (default: BENCH_POSTGRES_URL;"
        " none: a SQLite file, and no connection-termination fault)",
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="a SQLite store instead of PostgreSQL"
    )
    parser.add_argument(
        "--faults",
        default=",".join(DEFAULT_SCHEDULE),
        help=f"comma-separated, in order; known: {', '.join(FAULTS)}",
    )
    parser.add_argument("--work-dir", type=Path, help="logs and stores (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the harness polls the sandbox

    with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        work_dir = args.work_dir or Path(scratch)
        options = ChaosOptions(
            work_dir=work_dir,
            recipients=SOAK_RECIPIENTS if args.soak else args.recipients,
            workers=args.workers,
            rate=args.rate,
            postgres_url=None if args.sqlite else args.postgres_url,
            faults=[name.strip() for name in args.faults.split(",") if name.strip()],
        )
        started = datetime.now(UTC)
        try:
            figures = asyncio.run(run_chaos(options))
        except (ChaosError, ProcessError, OperationalError) as error:
            sys.exit(f"chaos: {error}")
        load = os.getloadavg()
        print()
        print(
            f"chaos run {started:%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores,"
            f" load average {load[0]:.1f} at the end; {options.workers} workers, store"
            f" {'PostgreSQL' if options.postgres_url else 'SQLite'};"
            + (f" logs in {work_dir}" if args.work_dir else " keep the logs with --work-dir")
        )
        print()
        print(table(figures))
    sys.exit(0 if figures.promise_kept else 1)


if __name__ == "__main__":
    main()
