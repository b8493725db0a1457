"""The figures of a chaos run, per fault: what the promise "no message lost, nobody messaged
twice, no campaign stuck" looked like around each one.

A fault's row covers the time from its start to the next fault's start (the last one: to the
end). A message counts in the row of the moment its store row last changed (lost, failed,
not final) or of its first accepted send (messaged twice)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from whatsapp_campaigns.chaos.stack import MessageOutcome
from whatsapp_campaigns.domain.statuses import (
    FAILURE_MESSAGE_STATUSES,
    PENDING_MESSAGE_STATUSES,
    MessageStatus,
)

PACE_BEFORE_SECONDS = 10  # the pace a fault is measured against: these seconds before it
RECOVERY_WINDOW_SECONDS = 3  # recovered: this many seconds back at half that pace or more


@dataclass(frozen=True)
class PlayedFault:
    name: str
    label: str
    started: float  # epoch seconds
    ended: float
    detail: str


@dataclass
class Row:
    label: str
    at: float | None  # seconds after the launch
    lost: int = 0  # never accepted by WhatsApp, and not reported failed
    twice: int = 0  # recipients WhatsApp accepted more than one message for
    failed: int = 0  # reported failed (after their retries)
    not_final: int = 0  # still queued/sending/retrying once the campaign ended
    busiest_second: int = 0  # most sends WhatsApp accepted in one calendar second
    recovery: float | None = None  # seconds until sends flowed again at half the earlier pace
    detail: str = ""


@dataclass
class Figures:
    recipients: int
    rate: float
    campaign_status: str
    seconds: float  # from the launch to the final status
    rows: list[Row] = field(default_factory=list)
    total: Row = field(default_factory=lambda: Row("whole run", None))
    no_delivery_status: int = 0  # `sent` at the end although the sandbox posted "read"
    sandbox_faults: dict[str, int] = field(default_factory=dict)  # what the sandbox played

    @property
    def promise_kept(self) -> bool:
        total = self.total
        return (
            self.campaign_status == "completed"
            and total.lost == total.twice == total.not_final == 0
        )


def compute(
    *,
    recipients: int,
    rate: float,
    launched: float,
    finished: float,
    campaign_status: str,
    played: Sequence[PlayedFault],
    per_second: Mapping[int, int],
    accepted_per_recipient: Mapping[str, int],
    repeated: Mapping[str, Sequence[float]],
    outcomes: Sequence[MessageOutcome],
    sandbox_faults: Mapping[str, int],
) -> Figures:
    figures = Figures(recipients, rate, campaign_status, finished - launched)
    figures.sandbox_faults = dict(sandbox_faults)
    starts = [launched] + [fault.started for fault in played]
    ends = [fault.started for fault in played] + [float("inf")]
    rows = [Row("before any fault", 0.0)] + [
        Row(fault.label, fault.started - launched, detail=fault.detail) for fault in played
    ]

    def row_at(moment: float | None) -> Row:
        if moment is None:
            return figures.total
        for row, start, end in zip(rows, starts, ends, strict=True):
            if start <= moment < end:
                return row
        return rows[0]

    for outcome in outcomes:
        status = MessageStatus(outcome.status)
        counted: list[str] = []
        if status in PENDING_MESSAGE_STATUSES:
            counted.append("not_final")
        if status in FAILURE_MESSAGE_STATUSES:
            counted.append("failed")
        elif accepted_per_recipient.get(outcome.wa_id, 0) == 0:
            counted.append("lost")
        if status is MessageStatus.SENT:
            figures.no_delivery_status += 1
        row = row_at(outcome.updated_at)
        for name in counted:
            setattr(row, name, getattr(row, name) + 1)
            if row is not figures.total:
                setattr(figures.total, name, getattr(figures.total, name) + 1)
    for times in repeated.values():
        row_at(min(times)).twice += 1
        figures.total.twice += 1

    for row, start, end in zip(rows, starts, ends, strict=True):
        seconds = [n for second, n in per_second.items() if start <= second + 0.5 < end]
        row.busiest_second = max(seconds, default=0)
    figures.total.busiest_second = max(per_second.values(), default=0)
    for row, fault in zip(rows[1:], played, strict=True):
        row.recovery = recovery_seconds(per_second, fault.started)
    figures.rows = rows
    return figures


def recovery_seconds(per_second: Mapping[int, int], started: float) -> float | None:
    """Seconds from `started` until sends flowed for RECOVERY_WINDOW_SECONDS at half the pace
    of the PACE_BEFORE_SECONDS before it, or more; None if they never did (or nothing was
    being sent before)."""
    first = int(started)
    before = sum(per_second.get(s, 0) for s in range(first - PACE_BEFORE_SECONDS, first))
    pace = before / PACE_BEFORE_SECONDS
    if pace <= 0:
        return None
    last = max(per_second, default=first)
    for second in range(first, last + 1):
        window = range(second, second + RECOVERY_WINDOW_SECONDS)
        if sum(per_second.get(s, 0) for s in window) / RECOVERY_WINDOW_SECONDS >= pace / 2:
            return float(max(0, second - first))
    return None


def table(figures: Figures) -> str:
    """The figures as a Markdown table, one row per fault and one for the whole run."""
    lines = [
        "| fault | at (s) | lost | messaged twice | failed | not final | busiest second"
        " (rate) | recovery (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rate = f"{figures.rate:g}"
    for row in [*figures.rows, figures.total]:
        at = "" if row.at is None else f"{row.at:.0f}"
        recovery = "" if row.recovery is None else f"{row.recovery:.0f}"
        if row.at and row.recovery is None:
            recovery = "never"
        lines.append(
            f"| {row.label} | {at} | {row.lost} | {row.twice} | {row.failed} | {row.not_final}"
            f" | {row.busiest_second} / {rate} | {recovery} |"
        )
    verdict = "kept" if figures.promise_kept else "BROKEN"
    lines += [
        "",
        f"{figures.recipients:,} recipients, campaign {figures.campaign_status} in"
        f" {figures.seconds:.0f} s; {figures.no_delivery_status} left `sent` without their"
        f" delivery status; promise (0 lost, 0 twice, all final, completed): {verdict}.",
        "The sandbox played: "
        + ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in figures.sandbox_faults.items())
        + ".",
    ]
    return "\n".join(lines)
