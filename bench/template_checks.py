"""Checking every recipient's template values before sending (SPEC §10): a 100,000-row
audience of `promo_media` (1% of rows with a bad value), timed on a fresh store (SQLite file,
and PostgreSQL when --postgres-url is given), side by side with the import of the same CSV
in the same run.

    .venv/bin/python bench/template_checks.py --rows 100000 \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

"check" is `recipient_checks.check_audience_values` (read the recipients a page at a time,
check each), wall clock and this process's CPU time (the machine may be shared);
"preflight" is `preflight.check_campaign`, which runs it with the other scheduling checks.
"""

import argparse
import csv
import io
import time

from scratch_store import migrated_store

from whatsapp_campaigns.domain.models import CampaignDraft
from whatsapp_campaigns.store import campaigns, catalog, preflight
from whatsapp_campaigns.store.audiences import import_audience_csv
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.store.recipient_checks import check_audience_values
from whatsapp_campaigns.whatsapp.sandbox.fixtures import PROMO_MEDIA, SANDBOX_TEMPLATES

IMAGE = "https://cdn.example.com/spring.jpg"
# Each kind of bad value of the issue, one row in every 100.
BAD = {
    7: ("Ana\nBo", "ok-7"),  # newline in a body parameter
    23: ("Cy", "has space"),  # URL suffix with a space
    51: ("", "ok-51"),  # missing name
}


def generate_csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["phone", "name", "button_0"])
    for i in range(rows):
        exchange, line = divmod(1000 + i, 10_000)
        name, suffix = BAD.get(i % 100, (f"Customer {i}", f"c{i}"))
        writer.writerow([f"+1202{555 + exchange}{line:04d}", name, suffix])
    return out.getvalue().encode()


def run(url: str, data: bytes) -> dict[str, float | int | str]:
    db = Database(url)
    try:
        seed_sandbox(db)
        catalog.upsert_templates(db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)
        started = time.perf_counter()
        audience = import_audience_csv(db, SANDBOX_ACCOUNT_ID, "bench", io.BytesIO(data)).audience
        imported = time.perf_counter() - started
        draft = CampaignDraft(
            name="bench",
            template_name="promo_media",
            sender_phone_number_id=SANDBOX_SENDER.phone_number_id,
            audience_id=audience.id,
            variables={"header_media": IMAGE},
        )
        campaign = campaigns.create_draft(db, SANDBOX_ACCOUNT_ID, draft)
        started, cpu_started = time.perf_counter(), time.process_time()
        values = check_audience_values(
            db, SANDBOX_ACCOUNT_ID, audience.id, PROMO_MEDIA, campaign.variables
        )
        checked = time.perf_counter() - started
        check_cpu = time.process_time() - cpu_started
        started = time.perf_counter()
        report = preflight.check_campaign(db, campaign.id, credits_per_message=1)
        preflighted = time.perf_counter() - started
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(values.by_rule.items()))
        return {
            "import": imported,
            "check": checked,
            "check_cpu": check_cpu,
            "preflight": preflighted,
            "checked": values.checked,
            "invalid": values.invalid,
            "rules": rules,
            "refused": int(not report.ok),
        }
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres-url", help="a PostgreSQL database to run against as well")
    parser.add_argument("--repeat", type=int, default=3, help="runs per backend; best is kept")
    args = parser.parse_args()

    data = generate_csv(args.rows)
    print(f"{args.rows:,} rows of promo_media values, {len(data) / 1e6:.1f} MB of CSV")
    for backend in ("sqlite", "postgresql"):
        if backend == "postgresql" and not args.postgres_url:
            continue
        results = []
        for _ in range(args.repeat):
            with migrated_store(backend, args.postgres_url) as url:
                results.append(run(url, data))
        result = min(results, key=lambda r: float(r["check"]))
        rate = float(result["checked"]) / float(result["check"])
        print(
            f"{backend}: import {result['import']:.2f}s | check {result['check']:.2f}s "
            f"(this process's CPU {result['check_cpu']:.2f}s) "
            f"({rate:,.0f} recipients/s, {float(result['check']) / float(result['import']):.2f}x "
            f"the import) | whole preflight {result['preflight']:.2f}s | "
            f"{result['invalid']:,} of {result['checked']:,} invalid ({result['rules']}); "
            f"refused: {bool(result['refused'])}; best of {args.repeat} by check time"
        )


if __name__ == "__main__":
    main()
