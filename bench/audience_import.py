"""Audience import throughput and memory: N generated CSV rows into a fresh store (SQLite
file, and PostgreSQL when --postgres-url is given), timed end to end (read, normalize, write).
The CSV is written to a file and each import runs in a child process that reads it as the CLI
does, so its peak RSS (`ru_maxrss`) is the import's own.

    .venv/bin/python bench/audience_import.py --rows 1000000 \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

The rows mix the formats people import (E.164, national with punctuation, 00 prefix), with 1%
invalid numbers, 1% duplicates and 1% opted-out numbers, and two variable columns.
"""

import argparse
import csv
import io
import multiprocessing
import random
import resource
import tempfile
import time
from pathlib import Path

from scratch_store import migrated_store

from whatsapp_campaigns.store.audiences import import_audience_csv
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import Account, OptOut

ACCOUNT = "bench"


def generate_csv(rows: int, seed: int = 7) -> tuple[bytes, list[str]]:
    """The CSV bytes and the opted-out numbers (E.164) among them."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["phone", "name", "order_id"])
    opted_out: list[str] = []
    previous = "+12025551000"
    for i in range(rows):
        # Valid US numbers: area codes 202/212/415, exchanges 2xx-9xx, outside 555-01xx.
        area = rng.choice(("202", "212", "415"))
        exchange = f"{rng.randint(200, 999)}"
        line = f"{rng.randint(0, 9999):04d}"
        e164 = f"+1{area}{exchange}{line}"
        roll = rng.random()
        if roll < 0.01:
            phone = f"+1 {area} 555 01"  # too short
        elif roll < 0.02:
            phone = previous  # duplicate
        elif roll < 0.03:
            phone = e164
            opted_out.append(e164)
        elif roll < 0.40:
            phone = f"({area}) {exchange}-{line}"
        elif roll < 0.50:
            phone = f"001 {area} {exchange} {line}"
        else:
            phone = e164
        previous = phone if roll >= 0.02 else previous
        writer.writerow([phone, f"Customer {i}", f"A{i:07d}"])
    return out.getvalue().encode(), opted_out


def run(url: str, csv_path: Path, opted_out: list[str]) -> tuple[float, int, str, float]:
    """Seed the account and its opt-outs, then import in a child process: elapsed seconds,
    rows, counts, and the child's peak RSS in MiB."""
    db = Database(url)
    try:
        with db.session() as session:
            session.add(Account(id=ACCOUNT, name="Bench"))
            session.flush()
            session.add_all(OptOut(account_id=ACCOUNT, phone_e164=p) for p in set(opted_out))
    finally:
        db.dispose()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: its own peak RSS
    with context.Pool(1) as pool:
        return pool.apply(_import_in_child, (url, str(csv_path)))


def _import_in_child(url: str, csv_path: str) -> tuple[float, int, str, float]:
    db = Database(url)
    try:
        started = time.perf_counter()
        result = import_audience_csv(db, ACCOUNT, "bench", csv_path)
        elapsed = time.perf_counter() - started
    finally:
        db.dispose()
    a = result.audience
    counts = (
        f"valid {a.valid}, invalid {a.invalid}, duplicates {a.duplicates}, "
        f"suppressed {a.suppressed}"
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return elapsed, a.valid + a.invalid + a.duplicates + a.suppressed, counts, peak_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres-url", help="a PostgreSQL database to run against as well")
    parser.add_argument("--repeat", type=int, default=3, help="runs per backend; best is kept")
    args = parser.parse_args()

    data, opted_out = generate_csv(args.rows)
    print(f"{args.rows} rows, {len(data) / 1e6:.1f} MB of CSV")
    with tempfile.TemporaryDirectory() as csv_dir:
        csv_path = Path(csv_dir) / "audience.csv"
        csv_path.write_bytes(data)
        del data
        for backend in ("sqlite", "postgresql"):
            if backend == "postgresql" and not args.postgres_url:
                continue
            timings = []
            for _ in range(args.repeat):
                with migrated_store(backend, args.postgres_url) as url:
                    timings.append(run(url, csv_path, opted_out))
            elapsed, rows, counts, _ = min(timings)
            peak = max(t[3] for t in timings)
            print(
                f"{backend}: {rows} rows in {elapsed:.2f}s = {rows / elapsed:,.0f} rows/s "
                f"(best of {args.repeat}; {counts}); peak RSS {peak:.0f} MiB"
            )


if __name__ == "__main__":
    main()
