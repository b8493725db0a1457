"""How progress reads: percent complete and the markdown summary shown in the Temporal UI."""

from collections.abc import Mapping

from whatsapp_campaigns.domain.models import Progress
from whatsapp_campaigns.domain.statuses import PENDING_MESSAGE_STATUSES, MessageStatus


def percent_complete(total: int, counts: Mapping[MessageStatus, int]) -> float:
    """Share of messages that have an outcome (anything but queued/sending/retrying)."""
    if total <= 0:
        return 0.0
    pending = sum(n for status, n in counts.items() if status in PENDING_MESSAGE_STATUSES)
    done = max(0, min(total, sum(counts.values()) - pending))
    return round(100.0 * done / total, 1)


def progress_markdown(progress: Progress) -> str:
    """A short summary for `workflow.set_current_details` (the UI's "Current details")."""
    lines = [
        f"**{progress.status.value}** · {progress.percent_complete:.1f}% of "
        f"{progress.total:,} messages"
    ]
    if progress.status_reason:
        lines.append(f"Reason: {progress.status_reason}")
    if progress.throttled_until is not None:
        lines.append(f"Throttled until {progress.throttled_until.isoformat()} (WhatsApp limit)")
    counts = [f"{status.value} {n:,}" for status, n in progress.counts.items() if n]
    if counts:
        lines.append(" · ".join(counts))
    for error in progress.errors[:3]:
        lines.append(f"Error {error.code}: {error.title} ({error.count:,})")
    return "\n\n".join(lines)
