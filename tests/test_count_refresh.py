"""When a campaign sending its messages re-reads its counts from the store
(workflows/dispatch.py `refresh_while_sending_due`): every 5 s while it sends 50 msg/s or more,
by progress below that, at least every 30 s."""

from datetime import timedelta

from whatsapp_campaigns.workflows.dispatch import (
    REFRESH_EVERY_SETTLED,
    refresh_while_sending_due,
)


def _due(seconds: float, settled: int) -> bool:
    return refresh_while_sending_due(timedelta(seconds=seconds), settled)


def test_a_campaign_sending_50_messages_a_second_re_reads_every_5_seconds() -> None:
    assert _due(5, 250)
    assert not _due(4.9, 10_000)


def test_a_slower_campaign_re_reads_once_250_sends_have_settled() -> None:
    assert REFRESH_EVERY_SETTLED == 250
    assert _due(12, 250)
    assert not _due(12, 249)


def test_a_campaign_sending_slowly_re_reads_at_least_every_30_seconds() -> None:
    assert _due(30, 0)
    assert not _due(29.9, 249)
