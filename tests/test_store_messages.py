"""Per-message store operations: materialize, page, finish what is left, retry failures, count
(SPEC §3 message statuses; §4 rules 2, 7, 10, 11). A send's attempts: test_store_attempts.py."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from tests.store_helpers import (
    ACCOUNT,
    fail_attempt,
    message_row,
    phones,
    seed_account,
    seed_campaign,
    seed_campaign_with_audience,
    seed_queued,
    set_messages,
)
from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import ErrorCount
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store import attempts, messages
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import MessageRow, OptOut, RecipientRow

S = CampaignStatus
M = MessageStatus
WINDOW = timedelta(minutes=5)  # the reconcile window given to start_attempt


def _rows(db: Database, campaign_id: str) -> list[MessageRow]:
    with db.session() as session:
        return list(
            session.scalars(
                select(MessageRow).where(MessageRow.campaign_id == campaign_id).order_by("id")
            )
        )


def _statuses(db: Database, message_ids: Sequence[int]) -> list[MessageStatus]:
    return [M(message_row(db, m).status) for m in message_ids]


def _suppress_at_import(db: Database, audience_id: str, phone: str) -> None:
    with db.session() as session:
        session.execute(
            update(RecipientRow)
            .where(RecipientRow.audience_id == audience_id, RecipientRow.phone_e164 == phone)
            .values(suppressed=True)
        )


def _opt_out(db: Database, phone: str, account_id: str = ACCOUNT) -> None:
    with db.session() as session:
        session.add(OptOut(account_id=account_id, phone_e164=phone, keyword="STOP"))


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


# --- materialize_messages -------------------------------------------------------------------


def test_materialize_creates_one_queued_message_per_recipient(account: Database) -> None:
    campaign_id, _ = seed_campaign_with_audience(account, 3, status=S.QUEUED)
    result = messages.materialize_messages(account, campaign_id)
    assert result == messages.MaterializeResult(total=3, queued=3, suppressed=0)
    rows = _rows(account, campaign_id)
    assert sorted(r.phone_e164 for r in rows) == phones(3)
    assert {(r.status, r.attempts, r.provider_message_id) for r in rows} == {("queued", 0, None)}
    assert all(r.queued_at is not None for r in rows)


def test_materialize_makes_recipients_suppressed_at_import_suppressed(account: Database) -> None:
    campaign_id, audience_id = seed_campaign_with_audience(account, 3, status=S.QUEUED)
    _suppress_at_import(account, audience_id, phones(3)[1])
    result = messages.materialize_messages(account, campaign_id)
    assert result == messages.MaterializeResult(total=3, queued=2, suppressed=1)
    by_phone = {r.phone_e164: r.status for r in _rows(account, campaign_id)}
    assert by_phone[phones(3)[1]] == "suppressed"


def test_materialize_makes_numbers_opted_out_since_the_import_suppressed(
    account: Database,
) -> None:
    campaign_id, _ = seed_campaign_with_audience(account, 3, status=S.QUEUED)
    _opt_out(account, phones(3)[2])
    result = messages.materialize_messages(account, campaign_id)
    assert (result.queued, result.suppressed) == (2, 1)
    by_phone = {r.phone_e164: r.status for r in _rows(account, campaign_id)}
    assert by_phone[phones(3)[2]] == "suppressed"


def test_materialize_ignores_opt_outs_from_another_account(account: Database) -> None:
    seed_account(account, "other")
    campaign_id, _ = seed_campaign_with_audience(account, 2, status=S.QUEUED)
    _opt_out(account, phones(2)[0], account_id="other")
    result = messages.materialize_messages(account, campaign_id)
    assert (result.queued, result.suppressed) == (2, 0)


def test_suppressed_messages_are_never_paged_for_sending(account: Database) -> None:
    campaign_id, _ = seed_campaign_with_audience(account, 3, status=S.QUEUED)
    _opt_out(account, phones(3)[0])
    messages.materialize_messages(account, campaign_id)
    paged = messages.page_message_ids(account, campaign_id)
    assert sorted(message_row(account, m).phone_e164 for m in paged) == phones(3)[1:]


def test_partitions_page_their_own_ids_in_order_and_together_all_of_them(
    account: Database,
) -> None:
    campaign_id, ids = seed_queued(account, 10)

    pages = [
        messages.page_message_ids(account, campaign_id, partition=k, partitions=3, limit=2)
        for k in range(3)
    ]

    for k, page in enumerate(pages):
        assert page == [i for i in ids if i % 3 == k][:2]
    rest = messages.page_message_ids(
        account, campaign_id, after_id=pages[0][-1], partition=0, partitions=3
    )
    assert sorted(pages[0] + rest) == [i for i in ids if i % 3 == 0]


def test_a_partition_outside_the_partitions_is_refused(account: Database) -> None:
    campaign_id, _ = seed_queued(account, 2)

    with pytest.raises(ValueError, match=r"partition 3 is not one of 0\.\.2"):
        messages.page_message_ids(account, campaign_id, partition=3, partitions=3)


def test_materialize_again_creates_nothing_and_returns_the_same_counts(
    account: Database,
) -> None:
    campaign_id, audience_id = seed_campaign_with_audience(account, 4, status=S.QUEUED)
    _suppress_at_import(account, audience_id, phones(4)[0])
    first = messages.materialize_messages(account, campaign_id)
    ids = [r.id for r in _rows(account, campaign_id)]
    again = messages.materialize_messages(account, campaign_id)
    assert again == first == messages.MaterializeResult(total=4, queued=3, suppressed=1)
    assert [r.id for r in _rows(account, campaign_id)] == ids


def test_materialize_again_does_not_requeue_messages_already_sent(account: Database) -> None:
    campaign_id, _ = seed_campaign_with_audience(account, 2, status=S.QUEUED)
    messages.materialize_messages(account, campaign_id)
    first_id = _rows(account, campaign_id)[0].id
    attempts.record_accepted(account, first_id, "wamid.1")
    result = messages.materialize_messages(account, campaign_id)
    assert result == messages.MaterializeResult(total=2, queued=1, suppressed=0)
    assert message_row(account, first_id).status == "sent"


def test_materialize_only_takes_the_campaigns_own_audience(account: Database) -> None:
    campaign_id, _ = seed_campaign_with_audience(account, 2, status=S.QUEUED)
    other_campaign, _ = seed_campaign_with_audience(account, 5, status=S.QUEUED, first_phone=100)
    messages.materialize_messages(account, campaign_id)
    assert len(_rows(account, campaign_id)) == 2
    assert _rows(account, other_campaign) == []


def test_materialize_a_campaign_without_audience_is_a_lookup_error(account: Database) -> None:
    campaign_id = seed_campaign(account, status=S.QUEUED)
    with pytest.raises(LookupError, match="has no audience"):
        messages.materialize_messages(account, campaign_id)


def test_materialize_an_unknown_campaign_is_a_lookup_error(db: Database) -> None:
    with pytest.raises(LookupError, match="campaign nope has no audience"):
        messages.materialize_messages(db, "nope")


def test_materialize_5000_recipients_takes_as_few_statements_as_3(account: Database) -> None:
    small, _ = seed_campaign_with_audience(account, 3, status=S.QUEUED)
    large, large_audience = seed_campaign_with_audience(
        account, 5000, status=S.QUEUED, first_phone=10
    )
    _suppress_at_import(account, large_audience, phones(1, first=10)[0])
    with _statements(account) as small_statements:
        messages.materialize_messages(account, small)
    with _statements(account) as large_statements:
        result = messages.materialize_messages(account, large)
    assert result == messages.MaterializeResult(total=5000, queued=4999, suppressed=1)
    assert len(large_statements) == len(small_statements) <= 8, large_statements


# --- page_message_ids -----------------------------------------------------------------------


def _page_all(db: Database, campaign_id: str, limit: int, **kwargs: Any) -> list[list[int]]:
    """Every page until an empty one, as the dispatcher reads them (a stuck cursor fails)."""
    pages, after = [], 0
    while page := messages.page_message_ids(db, campaign_id, after_id=after, limit=limit, **kwargs):
        assert len(page) <= limit and page[0] > after
        assert len(pages) < 100, "paging does not advance"
        pages.append(page)
        after = page[-1]
    return pages


def test_paging_visits_every_queued_message_once_in_id_order(account: Database) -> None:
    campaign_id, ids = seed_queued(account, 23)
    set_messages(account, ids[::4], status="sent")
    pages = _page_all(account, campaign_id, limit=5)
    visited = [m for page in pages for m in page]
    expected = [m for m in ids if m not in ids[::4]]
    assert visited == expected
    assert [len(p) for p in pages] == [5, 5, 5, 2]


def test_paging_returns_only_the_asked_status(account: Database) -> None:
    campaign_id, ids = seed_queued(account, 6)
    set_messages(account, ids[1::2], status="retrying")
    pages = _page_all(account, campaign_id, limit=2, status=M.RETRYING)
    assert [m for page in pages for m in page] == ids[1::2]


def test_paging_skips_other_campaigns_messages(account: Database) -> None:
    campaign_id, ids = seed_queued(account, 3)
    seed_queued(account, 3, first_phone=100)
    assert messages.page_message_ids(account, campaign_id, limit=100) == ids


def test_paging_after_the_last_id_is_empty(account: Database) -> None:
    campaign_id, ids = seed_queued(account, 3)
    assert messages.page_message_ids(account, campaign_id, after_id=ids[-1]) == []


# --- finish_pending -------------------------------------------------------------------------


def _mixed(db: Database) -> tuple[str, dict[M, int]]:
    """A campaign with one message in each of queued, retrying, sending and sent."""
    campaign_id, ids = seed_queued(db, 4)
    by_status = dict(zip([M.QUEUED, M.RETRYING, M.SENDING, M.SENT], ids, strict=True))
    for status, message_id in by_status.items():
        set_messages(db, message_id, status=status.value)
    return campaign_id, by_status


def test_finish_pending_cancels_queued_and_retrying_messages_and_counts_them(
    account: Database,
) -> None:
    campaign_id, by_status = _mixed(account)
    count = messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled by ann")
    assert count == 2
    assert {s: M(message_row(account, m).status) for s, m in by_status.items()} == {
        M.QUEUED: M.CANCELLED,
        M.RETRYING: M.CANCELLED,
        M.SENDING: M.SENDING,
        M.SENT: M.SENT,
    }


def test_finish_pending_including_sending_also_moves_messages_in_flight(
    account: Database,
) -> None:
    campaign_id, by_status = _mixed(account)
    count = messages.finish_pending(
        account,
        campaign_id,
        M.FAILED,
        reason="no answer from WhatsApp",
        statuses=(M.QUEUED, M.RETRYING, M.SENDING),
    )
    assert count == 3
    row = message_row(account, by_status[M.SENDING])
    assert (row.status, row.error_title) == ("failed", "no answer from WhatsApp")
    assert message_row(account, by_status[M.SENT]).status == "sent"


def test_finish_pending_as_failed_records_the_reason_and_the_failure_time(
    account: Database,
) -> None:
    campaign_id, _ = seed_queued(account, 2)
    messages.finish_pending(account, campaign_id, M.FAILED, reason="deadline")
    rows = _rows(account, campaign_id)
    assert {(r.status, r.error_title) for r in rows} == {("failed", "deadline")}
    assert all(r.failed_at is not None for r in rows)
    assert messages.error_summary(account, campaign_id) == [
        ErrorCount(code=None, title="deadline", count=2)
    ]


def test_finish_pending_as_failed_replaces_the_last_attempts_error_code_and_title_together(
    account: Database,
) -> None:
    campaign_id, (message_id,) = seed_queued(account)
    fail_attempt(
        account, message_id, ErrorClass.THROUGHPUT_LIMITED, code=130429, title="Rate limit hit"
    )
    messages.finish_pending(account, campaign_id, M.FAILED, reason="deadline")
    row = message_row(account, message_id)
    assert (row.error_class, row.error_code, row.error_title) == ("failed", None, "deadline")
    assert messages.error_summary(account, campaign_id) == [
        ErrorCount(code=None, title="deadline", count=1)
    ]


def test_cancelled_messages_are_not_reported_as_errors(account: Database) -> None:
    campaign_id, _ = seed_queued(account, 2)
    messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled by ann")
    assert {r.error_title for r in _rows(account, campaign_id)} == {None}
    assert messages.error_summary(account, campaign_id) == []


def test_finish_pending_leaves_other_campaigns_alone(account: Database) -> None:
    campaign_id, _ = seed_queued(account, 2)
    _, other_ids = seed_queued(account, 2, first_phone=100)
    messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled")
    assert _statuses(account, other_ids) == [M.QUEUED, M.QUEUED]


def test_finish_pending_again_finds_nothing_left(account: Database) -> None:
    campaign_id, _ = seed_queued(account, 2)
    messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled")
    assert messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled") == 0


# --- requeue_failed -------------------------------------------------------------------------


def test_requeue_failed_puts_failed_messages_back_in_the_queue_as_new(account: Database) -> None:
    campaign_id, ids = seed_queued(account, 3)
    for message_id in ids[:2]:
        attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
        fail_attempt(account, message_id, final=True)
    attempts.record_accepted(account, ids[2], "wamid.1")
    assert messages.requeue_failed(account, campaign_id) == 2
    for message_id in ids[:2]:
        row = message_row(account, message_id)
        assert (row.status, row.attempts) == ("queued", 0)
        assert (row.error_class, row.error_code, row.error_title, row.failed_at) == (None,) * 4
    assert message_row(account, ids[2]).status == "sent"
    assert messages.page_message_ids(account, campaign_id) == ids[:2]


def test_requeue_failed_retries_the_senders_messaging_limit_but_not_real_blocks(
    account: Database,
) -> None:
    campaign_id, (limited, blocked, invalid) = seed_queued(account, 3)
    fail_attempt(account, limited, ErrorClass.MESSAGING_LIMITED, final=True)
    fail_attempt(account, blocked, ErrorClass.BLOCKED, final=True)
    fail_attempt(account, invalid, ErrorClass.INVALID_CONTACT, final=True)
    assert _statuses(account, [limited, blocked, invalid]) == [
        M.BLOCKED,
        M.BLOCKED,
        M.INVALID_CONTACT,
    ]
    assert messages.requeue_failed(account, campaign_id) == 1
    assert _statuses(account, [limited, blocked, invalid]) == [
        M.QUEUED,
        M.BLOCKED,
        M.INVALID_CONTACT,
    ]


def test_requeue_failed_leaves_recipients_whose_template_values_failed_our_checks(
    account: Database,
) -> None:
    """Their values are the same in a new run: it would send them to WhatsApp unchecked."""
    campaign_id, (checked_out, refused_by_whatsapp) = seed_queued(account, 2)
    set_messages(
        account, checked_out, status="failed", error_class="template", error_title="no image"
    )
    fail_attempt(account, refused_by_whatsapp, ErrorClass.TEMPLATE, final=True, code=132000)
    assert messages.requeue_failed(account, campaign_id) == 1
    assert _statuses(account, [checked_out, refused_by_whatsapp]) == [M.FAILED, M.QUEUED]


def test_requeue_failed_skips_messages_whatsapp_accepted_then_failed(account: Database) -> None:
    """A `failed` webhook after `sent`: the message has a provider id, so it is not resent."""
    campaign_id, (message_id,) = seed_queued(account)
    set_messages(account, message_id, status="failed", provider_message_id="wamid.1")
    assert messages.requeue_failed(account, campaign_id) == 0
    assert message_row(account, message_id).status == "failed"


def test_requeue_failed_again_finds_nothing(account: Database) -> None:
    campaign_id, (message_id,) = seed_queued(account)
    fail_attempt(account, message_id, final=True)
    messages.requeue_failed(account, campaign_id)
    assert messages.requeue_failed(account, campaign_id) == 0


def test_requeue_failed_leaves_other_campaigns_alone(account: Database) -> None:
    campaign_id, _ = seed_queued(account)
    _, (other,) = seed_queued(account, first_phone=100)
    fail_attempt(account, other, final=True)
    assert messages.requeue_failed(account, campaign_id) == 0
    assert message_row(account, other).status == "failed"


# --- count_by_status and error_summary ------------------------------------------------------


def test_count_by_status_counts_the_campaigns_messages_per_status(account: Database) -> None:
    campaign_id, ids = seed_queued(account, 6)
    set_messages(account, ids[:3], status="sent")
    set_messages(account, ids[3], status="failed")
    seed_queued(account, 4, first_phone=100)
    assert messages.count_by_status(account, campaign_id) == {M.SENT: 3, M.FAILED: 1, M.QUEUED: 2}


def test_count_by_status_of_a_campaign_without_messages_is_empty(account: Database) -> None:
    campaign_id, _ = seed_campaign_with_audience(account)
    assert messages.count_by_status(account, campaign_id) == {}


def test_error_summary_groups_failures_by_code_and_title_most_frequent_first(
    account: Database,
) -> None:
    campaign_id, ids = seed_queued(account, 8)
    for message_id in ids[:3]:
        fail_attempt(
            account, message_id, ErrorClass.INVALID_CONTACT, final=True, code=131026, title="U"
        )
    for message_id in ids[3:5]:
        fail_attempt(account, message_id, ErrorClass.FAILED, final=True, code=131000, title="Wrong")
    fail_attempt(account, ids[5], ErrorClass.BLOCKED, final=True, code=131031, title="Locked")
    fail_attempt(
        account, ids[6], ErrorClass.TRANSIENT, code=130429, title="Rate limit hit"
    )  # retrying
    attempts.record_accepted(account, ids[7], "wamid.1")
    assert messages.error_summary(account, campaign_id) == [
        ErrorCount(code=131026, title="U", count=3),
        ErrorCount(code=131000, title="Wrong", count=2),
        ErrorCount(code=131031, title="Locked", count=1),
    ]


def test_error_summary_keeps_only_the_most_frequent_groups(account: Database) -> None:
    campaign_id, ids = seed_queued(account, 3)
    fail_attempt(account, ids[0], final=True, code=131000, title="Wrong")
    fail_attempt(account, ids[1], final=True, code=131000, title="Wrong")
    fail_attempt(account, ids[2], final=True, code=131049, title="Not delivered")
    assert messages.error_summary(account, campaign_id, limit=1) == [
        ErrorCount(code=131000, title="Wrong", count=2)
    ]


def test_error_summary_of_a_campaign_without_failures_is_empty(account: Database) -> None:
    campaign_id, _ = seed_queued(account, 2)
    assert messages.error_summary(account, campaign_id) == []
