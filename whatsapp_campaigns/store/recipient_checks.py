"""Every recipient's template values checked before anything is sent (SPEC §10).

The audience is read a page at a time (keyset pages, each a short transaction), each row
checked in Python against the template's variables, so memory stays flat and a 100,000-row
audience takes seconds (bench/template_checks.py, bench/RESULTS.md). The answer counts the
recipients that break each rule and keeps the first rows, by their CSV row number.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.templates import Problem, Rule, check_value
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.messages import recipient_is_suppressed
from whatsapp_campaigns.store.models import RecipientRow

FIRST_ROWS = 10
_PAGE_ROWS = 10_000


@dataclass(frozen=True)
class InvalidRecipient:
    row_number: int | None  # its CSV row (the header is row 1); None for older audiences
    phone_e164: str
    problems: list[Problem]

    def describe(self) -> str:
        where = f"row {self.row_number}" if self.row_number is not None else self.phone_e164
        return f"{where}: " + "; ".join(f"{p.variable} {p.rule}: {p.detail}" for p in self.problems)


@dataclass
class ValuesReport:
    checked: int = 0  # sendable recipients checked
    invalid: int = 0  # of them, those with at least one problem
    by_rule: Counter[Rule] = field(default_factory=Counter)  # recipients breaking each rule
    first_rows: list[InvalidRecipient] = field(default_factory=list)
    # recipient id -> the reason its message fails, when asked for (skip-invalid).
    reasons: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.invalid == 0

    def summary(self) -> str:
        """One line: how many fail which rule, and the first rows."""
        rules = ", ".join(f"{rule} {count:,}" for rule, count in sorted(self.by_rule.items()))
        rows = " | ".join(item.describe() for item in self.first_rows[:3])
        return (
            f"{self.invalid:,} of {self.checked:,} recipients have invalid template values "
            f"({rules}); first rows: {rows}"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "invalid": self.invalid,
            "by_rule": {str(rule): count for rule, count in sorted(self.by_rule.items())},
            "first_rows": [
                {
                    "row": item.row_number,
                    "phone": item.phone_e164,
                    "problems": [
                        {"variable": p.variable, "rule": str(p.rule), "detail": p.detail}
                        for p in item.problems
                    ],
                }
                for item in self.first_rows
            ],
        }


def check_audience_values(
    db: Database,
    account_id: str,
    audience_id: str,
    template: Template,
    fixed: Mapping[str, str],
    *,
    keep_reasons: bool = False,
) -> ValuesReport:
    """Check the values every sendable recipient of the audience would get (their CSV column,
    else the campaign's fixed value) against the template's variables."""
    report = ValuesReport()
    needs = template.needs()
    if not needs:
        return report
    # A fixed value is the same for every recipient who lacks one: checked once.
    fallback = {v.name: check_value(v, fixed.get(v.name)) for v in needs}
    after_id = 0
    while True:
        # A page per short transaction: the store's write turn is never held for long.
        with db.transaction() as connection:
            page = connection.execute(_page(account_id, audience_id, after_id)).all()
        for recipient_id, row_number, phone, row in page:
            problems = []
            for variable in needs:
                value = row.get(variable.name) if row else None
                if value is None or value == "":
                    problem = fallback[variable.name]
                else:
                    problem = check_value(variable, str(value))
                if problem is not None:
                    problems.append(problem)
            report.checked += 1
            if not problems:
                continue
            report.invalid += 1
            report.by_rule.update({p.rule for p in problems})
            if len(report.first_rows) < FIRST_ROWS:
                report.first_rows.append(InvalidRecipient(row_number, phone, problems))
            if keep_reasons:
                first = problems[0]
                report.reasons[recipient_id] = (
                    f"invalid template value: {first.variable} ({first.rule.meaning})"
                )
        if len(page) < _PAGE_ROWS:
            return report
        after_id = page[-1][0]


def _page(account_id: str, audience_id: str, after_id: int) -> Select[Any]:
    return (
        select(
            RecipientRow.id,
            RecipientRow.row_number,
            RecipientRow.phone_e164,
            RecipientRow.variables,
        )
        .where(
            RecipientRow.audience_id == audience_id,
            RecipientRow.id > after_id,
            ~recipient_is_suppressed(account_id),
        )
        .order_by(RecipientRow.id)
        .limit(_PAGE_ROWS)
    )
