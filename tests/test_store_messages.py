"""Per-message store operations: materialize, page, claim a send, record its outcome, finish what
is left, retry failures, count (SPEC §3 message statuses; §4 rules 2, 6, 7, 10, 11, 12)."""

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from tests.store_helpers import ACCOUNT, SENDER, seed_account, seed_audience, seed_campaign
from tests.store_helpers import seed_messages as seed_message_rows
from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import ErrorCount
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store import messages
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import CampaignRow, MessageRow, OptOut, RecipientRow, utcnow

S = CampaignStatus
M = MessageStatus
WINDOW = timedelta(minutes=5)  # the reconcile window given to start_attempt


@pytest.fixture
def account(db: Database) -> Database:
    seed_account(db)
    return db


def _phones(count: int, first: int = 0) -> list[str]:
    return [f"+1415{n:07d}" for n in range(first, first + count)]


def _campaign(
    db: Database,
    count: int = 1,
    *,
    status: CampaignStatus = S.SENDING,
    policy: dict[str, object] | None = None,
    first_phone: int = 0,
) -> tuple[str, str]:
    """A campaign over a new audience of `count` recipients; returns (campaign id, audience id)."""
    audience_id = seed_audience(db, phones=_phones(count, first_phone))
    campaign_id = seed_campaign(db, status=status, audience_id=audience_id, policy=policy)
    return campaign_id, audience_id


def _queued(db: Database, count: int = 1, **campaign: Any) -> tuple[str, list[int]]:
    """A campaign with `count` queued messages; returns (campaign id, message ids by id)."""
    campaign_id, audience_id = _campaign(db, count, **campaign)
    return campaign_id, sorted(seed_message_rows(db, campaign_id, audience_id))


def _set(db: Database, message_ids: int | Sequence[int], **values: Any) -> None:
    ids = [message_ids] if isinstance(message_ids, int) else list(message_ids)
    with db.session() as session:
        session.execute(update(MessageRow).where(MessageRow.id.in_(ids)).values(**values))


def _row(db: Database, message_id: int) -> MessageRow:
    with db.session() as session:
        row = session.get(MessageRow, message_id)
        assert row is not None
        return row


def _rows(db: Database, campaign_id: str) -> list[MessageRow]:
    with db.session() as session:
        return list(
            session.scalars(
                select(MessageRow).where(MessageRow.campaign_id == campaign_id).order_by("id")
            )
        )


def _statuses(db: Database, message_ids: Sequence[int]) -> list[MessageStatus]:
    return [M(_row(db, m).status) for m in message_ids]


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


def _fail(
    db: Database,
    message_id: int,
    error_class: ErrorClass = ErrorClass.TRANSIENT,
    *,
    final: bool = False,
    code: int | None = 131000,
    title: str = "Something went wrong",
    outcome_unknown: bool = False,
) -> MessageStatus:
    return messages.record_failure(
        db,
        message_id,
        error_class=error_class,
        code=code,
        title=title,
        final=final,
        outcome_unknown=outcome_unknown,
    )


# --- materialize_messages -------------------------------------------------------------------


def test_materialize_creates_one_queued_message_per_recipient(account: Database) -> None:
    campaign_id, _ = _campaign(account, 3, status=S.QUEUED)
    result = messages.materialize_messages(account, campaign_id)
    assert result == messages.MaterializeResult(total=3, queued=3, suppressed=0)
    rows = _rows(account, campaign_id)
    assert sorted(r.phone_e164 for r in rows) == _phones(3)
    assert {(r.status, r.attempts, r.provider_message_id) for r in rows} == {("queued", 0, None)}
    assert all(r.queued_at is not None for r in rows)


def test_materialize_makes_recipients_suppressed_at_import_suppressed(account: Database) -> None:
    campaign_id, audience_id = _campaign(account, 3, status=S.QUEUED)
    _suppress_at_import(account, audience_id, _phones(3)[1])
    result = messages.materialize_messages(account, campaign_id)
    assert result == messages.MaterializeResult(total=3, queued=2, suppressed=1)
    by_phone = {r.phone_e164: r.status for r in _rows(account, campaign_id)}
    assert by_phone[_phones(3)[1]] == "suppressed"


def test_materialize_makes_numbers_opted_out_since_the_import_suppressed(
    account: Database,
) -> None:
    campaign_id, _ = _campaign(account, 3, status=S.QUEUED)
    _opt_out(account, _phones(3)[2])
    result = messages.materialize_messages(account, campaign_id)
    assert (result.queued, result.suppressed) == (2, 1)
    by_phone = {r.phone_e164: r.status for r in _rows(account, campaign_id)}
    assert by_phone[_phones(3)[2]] == "suppressed"


def test_materialize_ignores_opt_outs_from_another_account(account: Database) -> None:
    seed_account(account, "other")
    campaign_id, _ = _campaign(account, 2, status=S.QUEUED)
    _opt_out(account, _phones(2)[0], account_id="other")
    result = messages.materialize_messages(account, campaign_id)
    assert (result.queued, result.suppressed) == (2, 0)


def test_suppressed_messages_are_never_paged_for_sending(account: Database) -> None:
    campaign_id, _ = _campaign(account, 3, status=S.QUEUED)
    _opt_out(account, _phones(3)[0])
    messages.materialize_messages(account, campaign_id)
    paged = messages.page_message_ids(account, campaign_id)
    assert sorted(_row(account, m).phone_e164 for m in paged) == _phones(3)[1:]


def test_partitions_page_their_own_ids_in_order_and_together_all_of_them(
    account: Database,
) -> None:
    campaign_id, ids = _queued(account, 10)

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
    campaign_id, _ = _queued(account, 2)

    with pytest.raises(ValueError, match=r"partition 3 is not one of 0\.\.2"):
        messages.page_message_ids(account, campaign_id, partition=3, partitions=3)


def test_materialize_again_creates_nothing_and_returns_the_same_counts(
    account: Database,
) -> None:
    campaign_id, audience_id = _campaign(account, 4, status=S.QUEUED)
    _suppress_at_import(account, audience_id, _phones(4)[0])
    first = messages.materialize_messages(account, campaign_id)
    ids = [r.id for r in _rows(account, campaign_id)]
    again = messages.materialize_messages(account, campaign_id)
    assert again == first == messages.MaterializeResult(total=4, queued=3, suppressed=1)
    assert [r.id for r in _rows(account, campaign_id)] == ids


def test_materialize_again_does_not_requeue_messages_already_sent(account: Database) -> None:
    campaign_id, _ = _campaign(account, 2, status=S.QUEUED)
    messages.materialize_messages(account, campaign_id)
    first_id = _rows(account, campaign_id)[0].id
    messages.record_accepted(account, first_id, "wamid.1")
    result = messages.materialize_messages(account, campaign_id)
    assert result == messages.MaterializeResult(total=2, queued=1, suppressed=0)
    assert _row(account, first_id).status == "sent"


def test_materialize_only_takes_the_campaigns_own_audience(account: Database) -> None:
    campaign_id, _ = _campaign(account, 2, status=S.QUEUED)
    other_campaign, _ = _campaign(account, 5, status=S.QUEUED, first_phone=100)
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
    small, _ = _campaign(account, 3, status=S.QUEUED)
    large, large_audience = _campaign(account, 5000, status=S.QUEUED, first_phone=10)
    _suppress_at_import(account, large_audience, _phones(1, first=10)[0])
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
    campaign_id, ids = _queued(account, 23)
    _set(account, ids[::4], status="sent")
    pages = _page_all(account, campaign_id, limit=5)
    visited = [m for page in pages for m in page]
    expected = [m for m in ids if m not in ids[::4]]
    assert visited == expected
    assert [len(p) for p in pages] == [5, 5, 5, 2]


def test_paging_returns_only_the_asked_status(account: Database) -> None:
    campaign_id, ids = _queued(account, 6)
    _set(account, ids[1::2], status="retrying")
    pages = _page_all(account, campaign_id, limit=2, status=M.RETRYING)
    assert [m for page in pages for m in page] == ids[1::2]


def test_paging_skips_other_campaigns_messages(account: Database) -> None:
    campaign_id, ids = _queued(account, 3)
    _queued(account, 3, first_phone=100)
    assert messages.page_message_ids(account, campaign_id, limit=100) == ids


def test_paging_after_the_last_id_is_empty(account: Database) -> None:
    campaign_id, ids = _queued(account, 3)
    assert messages.page_message_ids(account, campaign_id, after_id=ids[-1]) == []


# --- start_attempt --------------------------------------------------------------------------


def test_start_attempt_claims_a_queued_message_with_everything_the_send_needs(
    account: Database,
) -> None:
    campaign_id, (message_id,) = _queued(account, policy={"max_attempts": 5})
    start = messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.settled, start.campaign_halted, start.unresolved_since) == (None, None, None)
    job = start.job
    assert job is not None
    assert (job.message_id, job.campaign_id, job.account_id) == (message_id, campaign_id, ACCOUNT)
    assert (job.sender_phone_number_id, job.phone_e164) == (SENDER, _phones(1)[0])
    assert (job.template_name, job.language, job.variables) == ("spring_sale", "en", {"name": "C0"})
    assert (job.attempt, job.policy.max_attempts) == (1, 5)
    assert job.sender_rate == 80  # the number's messages/s, for the per-second admission


def test_concurrent_claims_of_one_message_hand_it_out_once(account: Database) -> None:
    _, (message_id,) = _queued(account)
    claimants = 8
    barrier = threading.Barrier(claimants)

    def claim() -> messages.AttemptStart:
        barrier.wait()
        return messages.start_attempt(account, message_id, reconcile_window=WINDOW)

    with ThreadPoolExecutor(claimants) as pool:
        starts = list(pool.map(lambda _: claim(), range(claimants)))

    assert sum(1 for start in starts if start.job is not None) == 1
    assert _row(account, message_id).attempts == 1


def test_start_attempt_marks_the_message_sending_and_counts_the_attempt(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    before = utcnow()
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    row = _row(account, message_id)
    assert (row.status, row.attempts) == ("sending", 1)
    assert row.sending_at is not None and row.sending_at >= before


def test_start_attempt_on_a_retrying_message_is_the_next_attempt(account: Database) -> None:
    _, (message_id,) = _queued(account)
    _set(account, message_id, status="retrying", attempts=1)
    start = messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert start.job is not None and start.job.attempt == 2
    assert _row(account, message_id).attempts == 2


def test_start_attempt_while_the_campaign_is_queued_claims_the_message(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account, status=S.QUEUED)
    assert messages.start_attempt(account, message_id, reconcile_window=WINDOW).job is not None


def test_an_accepted_message_is_settled_and_not_sent_again(account: Database) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    messages.record_accepted(account, message_id, "wamid.1")
    start = messages.start_attempt(account, message_id, reconcile_window=timedelta(0))
    assert (start.job, start.settled) == (None, M.SENT)
    assert _row(account, message_id).attempts == 1


def test_a_message_with_a_provider_id_is_settled_even_if_still_sending(
    account: Database,
) -> None:
    """A webhook reconciled the id (biz_opaque_callback_data) before record_accepted ran."""
    _, (message_id,) = _queued(account)
    _set(account, message_id, status="sending", provider_message_id="wamid.1", attempts=1)
    start = messages.start_attempt(account, message_id, reconcile_window=timedelta(0))
    assert start.job is None and start.settled is M.SENDING
    assert _row(account, message_id).attempts == 1


@pytest.mark.parametrize(
    "status", [M.DELIVERED, M.FAILED, M.INVALID_CONTACT, M.BLOCKED, M.SUPPRESSED, M.CANCELLED]
)
def test_a_message_with_a_final_status_is_settled(account: Database, status: M) -> None:
    _, (message_id,) = _queued(account)
    _set(account, message_id, status=status.value)
    start = messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.job, start.settled) == (None, status)
    assert _row(account, message_id).status == status.value


@pytest.mark.parametrize("campaign_status", [S.PAUSED, S.CANCELLED])
def test_start_attempt_in_a_halted_campaign_yields_no_job_and_leaves_the_message_queued(
    account: Database, campaign_status: CampaignStatus
) -> None:
    _, (message_id,) = _queued(account, status=campaign_status)
    start = messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.job, start.campaign_halted) == (None, campaign_status.value)
    row = _row(account, message_id)
    assert (row.status, row.attempts, row.sending_at) == ("queued", 0, None)


def test_an_accepted_message_in_a_paused_campaign_is_settled_not_halted(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account, status=S.PAUSED)
    _set(account, message_id, status="sent", provider_message_id="wamid.1")
    start = messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.settled, start.campaign_halted) == (M.SENT, None)


def test_an_unknown_outcome_is_unresolved_within_the_reconcile_window(account: Database) -> None:
    _, (message_id,) = _queued(account)
    sending_at = utcnow() - timedelta(seconds=10)
    _set(account, message_id, status="sending", attempts=1, sending_at=sending_at)
    start = messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.job, start.unresolved_since) == (None, sending_at)
    row = _row(account, message_id)
    assert (row.status, row.attempts, row.sending_at) == ("sending", 1, sending_at)


def test_an_unknown_outcome_is_sent_again_after_the_reconcile_window(account: Database) -> None:
    _, (message_id,) = _queued(account)
    _set(account, message_id, status="sending", attempts=1, sending_at=utcnow() - 2 * WINDOW)
    start = messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert start.unresolved_since is None
    assert start.job is not None and start.job.attempt == 2
    row = _row(account, message_id)
    assert row.attempts == 2 and row.sending_at is not None
    assert row.sending_at > utcnow() - WINDOW


def test_a_timed_out_attempt_waits_for_its_webhook_before_the_next_send(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    _fail(account, message_id, outcome_unknown=True)
    waiting = messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert waiting.job is None
    assert waiting.unresolved_since == _row(account, message_id).sending_at


def test_start_attempt_of_an_unknown_message_is_a_lookup_error(account: Database) -> None:
    with pytest.raises(LookupError, match="message 999 not found"):
        messages.start_attempt(account, 999, reconcile_window=WINDOW)


# --- claim_attempts: the claims of concurrent sends, in one read and one write ---------------


def test_claiming_messages_together_answers_each_as_claiming_it_alone_would(
    account: Database,
) -> None:
    _, (queued, accepted, unresolved, retrying) = _queued(account, 4)
    _set(account, accepted, status="sent", provider_message_id="wamid.1", attempts=1)
    sending_at = utcnow() - timedelta(seconds=10)
    _set(account, unresolved, status="sending", attempts=1, sending_at=sending_at)
    _set(account, retrying, status="retrying", attempts=2)

    with account.transaction() as connection:
        starts = messages.claim_attempts(
            connection, [queued, accepted, unresolved, retrying], reconcile_window=WINDOW
        )

    assert [start.job.message_id if start.job else None for start in starts] == [
        queued,
        None,
        None,
        retrying,
    ]
    assert (starts[1].settled, starts[2].unresolved_since) == (M.SENT, sending_at)
    assert [start.job.attempt for start in starts if start.job] == [1, 3]
    assert [(_row(account, i).status, _row(account, i).attempts) for i in (queued, retrying)] == [
        ("sending", 1),
        ("sending", 3),
    ]
    assert (_row(account, unresolved).attempts, _row(account, accepted).status) == (1, "sent")


def test_claiming_messages_of_two_campaigns_together_gives_each_job_its_campaign(
    account: Database,
) -> None:
    first, (first_id,) = _queued(account, policy={"max_attempts": 5})
    second, (second_id,) = _queued(account, first_phone=1)

    with account.transaction() as connection:
        starts = messages.claim_attempts(connection, [first_id, second_id], reconcile_window=WINDOW)

    jobs = [start.job for start in starts if start.job]
    assert [(job.campaign_id, job.policy.max_attempts) for job in jobs] == [(first, 5), (second, 3)]


def test_a_message_claimed_twice_in_one_batch_is_refused(account: Database) -> None:
    # Each claim must see the store as the one before it left it: claimed one by one instead.
    _, (message_id,) = _queued(account)
    with pytest.raises(ValueError, match="claimed twice"), account.transaction() as connection:
        messages.claim_attempts(connection, [message_id, message_id], reconcile_window=WINDOW)
    assert _row(account, message_id).attempts == 0


def test_claiming_an_unknown_message_with_others_is_a_lookup_error_for_the_batch(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    refused = pytest.raises(LookupError, match="message 999 not found")
    with refused, account.transaction() as connection:
        messages.claim_attempts(connection, [message_id, 999], reconcile_window=WINDOW)
    assert _row(account, message_id).attempts == 0  # rolled back with the batch


# --- record_accepted ------------------------------------------------------------------------


def test_record_accepted_stores_the_provider_id_and_marks_the_message_sent(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert messages.record_accepted(account, message_id, "wamid.1") is M.SENT
    row = _row(account, message_id)
    assert (row.status, row.provider_message_id) == ("sent", "wamid.1")
    assert row.sent_at is not None


def test_record_accepted_twice_is_harmless(account: Database) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    messages.record_accepted(account, message_id, "wamid.1")
    sent_at = _row(account, message_id).sent_at
    assert messages.record_accepted(account, message_id, "wamid.1") is M.SENT
    row = _row(account, message_id)
    assert (row.status, row.provider_message_id, row.sent_at) == ("sent", "wamid.1", sent_at)


def test_record_accepted_keeps_a_delivered_status_from_an_earlier_webhook(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    delivered_at = utcnow()
    _set(
        account,
        message_id,
        status="delivered",
        provider_message_id="wamid.1",
        delivered_at=delivered_at,
    )
    assert messages.record_accepted(account, message_id, "wamid.1") is M.DELIVERED
    row = _row(account, message_id)
    assert (row.status, row.delivered_at) == ("delivered", delivered_at)


def test_record_accepted_after_a_webhook_reconciled_the_id_marks_it_sent(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    _set(account, message_id, status="sending", provider_message_id="wamid.1", attempts=1)
    assert messages.record_accepted(account, message_id, "wamid.1") is M.SENT
    assert _row(account, message_id).status == "sent"


@pytest.mark.parametrize(
    ("given_up_as", "reason"),
    [(M.CANCELLED, "campaign cancelled"), (M.FAILED, "no answer from WhatsApp")],
)
def test_record_accepted_after_the_message_was_given_up_marks_it_sent_without_error(
    account: Database, given_up_as: M, reason: str
) -> None:
    _, (message_id,) = _queued(account)
    _set(account, message_id, status=given_up_as.value, error_title=reason, attempts=1)
    assert messages.record_accepted(account, message_id, "wamid.1") is M.SENT
    row = _row(account, message_id)
    assert (row.status, row.provider_message_id, row.error_title) == ("sent", "wamid.1", None)


def test_record_accepted_keeps_a_failure_whatsapp_reported_for_that_id(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    _set(account, message_id, status="failed", provider_message_id="wamid.1", error_code=131026)
    assert messages.record_accepted(account, message_id, "wamid.1") is M.FAILED


def test_record_accepted_with_a_different_provider_id_is_refused(account: Database) -> None:
    _, (message_id,) = _queued(account)
    messages.record_accepted(account, message_id, "wamid.1")
    with pytest.raises(ValueError, match=r"already has provider id wamid\.1"):
        messages.record_accepted(account, message_id, "wamid.2")
    assert _row(account, message_id).provider_message_id == "wamid.1"


def test_record_accepted_of_an_unknown_message_is_a_lookup_error(account: Database) -> None:
    with pytest.raises(LookupError, match="message 999 not found"):
        messages.record_accepted(account, 999, "wamid.1")


def test_accepted_ids_stored_together_give_each_message_its_status(account: Database) -> None:
    _, ids = _queued(account, 3)
    _set(account, ids[1], status="delivered", provider_message_id="wamid.1")

    with account.transaction() as connection:
        statuses = messages.store_accepted(
            connection, [(ids[0], "wamid.0"), (ids[1], "wamid.1"), (ids[2], "wamid.2")]
        )

    assert statuses == [M.SENT, M.DELIVERED, M.SENT]
    assert [_row(account, i).provider_message_id for i in ids] == ["wamid.0", "wamid.1", "wamid.2"]


def test_accepted_ids_stored_together_are_refused_together_if_one_is_another_id(
    account: Database,
) -> None:
    # The caller rolls back the batch and stores each alone (activities/grouped_writes.py).
    _, ids = _queued(account, 2)
    messages.record_accepted(account, ids[1], "wamid.1")
    refused = pytest.raises(ValueError, match=rf"message {ids[1]} already has provider id wamid\.1")
    with refused, account.transaction() as connection:
        messages.store_accepted(connection, [(ids[0], "wamid.0"), (ids[1], "wamid.2")])
    assert _row(account, ids[0]).provider_message_id is None


def test_accepted_ids_stored_together_are_refused_if_one_message_is_given_twice(
    account: Database,
) -> None:
    # One statement picks each message's id by its row: a second id for it could not be seen.
    _, ids = _queued(account, 2)
    refused = pytest.raises(ValueError, match="accepted twice in one batch")
    with refused, account.transaction() as connection:
        messages.store_accepted(
            connection, [(ids[0], "wamid.0"), (ids[1], "wamid.1"), (ids[0], "wamid.9")]
        )
    assert [_row(account, i).provider_message_id for i in ids] == [None, None]


# --- record_failure -------------------------------------------------------------------------


def test_a_failure_that_will_be_retried_makes_the_message_retrying(account: Database) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    status = _fail(account, message_id, ErrorClass.THROUGHPUT_LIMITED, code=130429, title="Rate")
    assert status is M.RETRYING
    row = _row(account, message_id)
    assert (row.status, row.error_class, row.error_code, row.error_title) == (
        "retrying",
        "throughput_limited",
        130429,
        "Rate",
    )
    assert row.failed_at is None


@pytest.mark.parametrize(
    ("error_class", "final_status"),
    [
        (ErrorClass.FAILED, M.FAILED),
        (ErrorClass.TRANSIENT, M.FAILED),
        (ErrorClass.TEMPLATE, M.FAILED),
        (ErrorClass.INVALID_CONTACT, M.INVALID_CONTACT),
        (ErrorClass.BLOCKED, M.BLOCKED),
        (ErrorClass.MESSAGING_LIMITED, M.BLOCKED),
    ],
)
def test_a_final_failure_sets_the_failure_status_with_the_error_code_and_title(
    account: Database, error_class: ErrorClass, final_status: M
) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    status = _fail(account, message_id, error_class, final=True, code=131026, title="Undeliverable")
    assert status is final_status
    row = _row(account, message_id)
    assert (row.status, row.error_class, row.error_code, row.error_title) == (
        final_status.value,
        error_class.value,
        131026,
        "Undeliverable",
    )
    assert row.failed_at is not None


def test_a_failure_with_an_unknown_outcome_leaves_the_message_sending(account: Database) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    status = _fail(account, message_id, code=None, title="timed out", outcome_unknown=True)
    assert status is M.SENDING
    row = _row(account, message_id)
    assert (row.status, row.error_title) == ("sending", "timed out")


def test_the_reconcile_wait_after_an_unknown_outcome_counts_from_the_failure(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    _set(account, message_id, sending_at=utcnow() - 2 * WINDOW)  # a long attempt
    _fail(account, message_id, code=None, title="timed out", outcome_unknown=True)

    again = messages.start_attempt(account, message_id, reconcile_window=WINDOW)

    assert again.job is None and again.unresolved_since is not None


def test_resume_attempt_restarts_the_attempt_clock_while_the_campaign_sends(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    _set(account, message_id, sending_at=utcnow() - 2 * WINDOW)

    assert messages.resume_attempt(account, message_id) is True
    row = _row(account, message_id)
    assert row.status == "sending" and row.sending_at > utcnow() - WINDOW


def test_resume_attempt_hands_the_message_back_when_the_campaign_paused(
    account: Database,
) -> None:
    campaign_id, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    with account.session() as session:
        session.execute(
            update(CampaignRow).where(CampaignRow.id == campaign_id).values(status="paused")
        )

    assert messages.resume_attempt(account, message_id) is False
    row = _row(account, message_id)
    assert (row.status, row.attempts, row.sending_at) == ("queued", 0, None)


def test_a_final_failure_with_an_unknown_outcome_still_fails_the_message(
    account: Database,
) -> None:
    _, (message_id,) = _queued(account)
    messages.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert _fail(account, message_id, final=True, outcome_unknown=True) is M.FAILED
    assert _row(account, message_id).status == "failed"


def test_a_late_failure_does_not_undo_a_delivered_webhook(account: Database) -> None:
    _, (message_id,) = _queued(account)
    _set(account, message_id, status="delivered", provider_message_id="wamid.1")
    assert _fail(account, message_id, final=True) is M.DELIVERED
    row = _row(account, message_id)
    assert (row.status, row.failed_at) == ("delivered", None)


def test_a_retriable_failure_does_not_undo_an_accepted_send(account: Database) -> None:
    _, (message_id,) = _queued(account)
    messages.record_accepted(account, message_id, "wamid.1")
    assert _fail(account, message_id) is M.SENT


def test_record_failure_of_an_unknown_message_is_a_lookup_error(account: Database) -> None:
    with pytest.raises(LookupError, match="message 999 not found"):
        _fail(account, 999)


# --- finish_pending -------------------------------------------------------------------------


def _mixed(db: Database) -> tuple[str, dict[M, int]]:
    """A campaign with one message in each of queued, retrying, sending and sent."""
    campaign_id, ids = _queued(db, 4)
    by_status = dict(zip([M.QUEUED, M.RETRYING, M.SENDING, M.SENT], ids, strict=True))
    for status, message_id in by_status.items():
        _set(db, message_id, status=status.value)
    return campaign_id, by_status


def test_finish_pending_cancels_queued_and_retrying_messages_and_counts_them(
    account: Database,
) -> None:
    campaign_id, by_status = _mixed(account)
    count = messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled by ann")
    assert count == 2
    assert {s: M(_row(account, m).status) for s, m in by_status.items()} == {
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
    row = _row(account, by_status[M.SENDING])
    assert (row.status, row.error_title) == ("failed", "no answer from WhatsApp")
    assert _row(account, by_status[M.SENT]).status == "sent"


def test_finish_pending_as_failed_records_the_reason_and_the_failure_time(
    account: Database,
) -> None:
    campaign_id, _ = _queued(account, 2)
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
    campaign_id, (message_id,) = _queued(account)
    _fail(account, message_id, ErrorClass.THROUGHPUT_LIMITED, code=130429, title="Rate limit hit")
    messages.finish_pending(account, campaign_id, M.FAILED, reason="deadline")
    row = _row(account, message_id)
    assert (row.error_class, row.error_code, row.error_title) == ("failed", None, "deadline")
    assert messages.error_summary(account, campaign_id) == [
        ErrorCount(code=None, title="deadline", count=1)
    ]


def test_cancelled_messages_are_not_reported_as_errors(account: Database) -> None:
    campaign_id, _ = _queued(account, 2)
    messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled by ann")
    assert {r.error_title for r in _rows(account, campaign_id)} == {None}
    assert messages.error_summary(account, campaign_id) == []


def test_finish_pending_leaves_other_campaigns_alone(account: Database) -> None:
    campaign_id, _ = _queued(account, 2)
    _, other_ids = _queued(account, 2, first_phone=100)
    messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled")
    assert _statuses(account, other_ids) == [M.QUEUED, M.QUEUED]


def test_finish_pending_again_finds_nothing_left(account: Database) -> None:
    campaign_id, _ = _queued(account, 2)
    messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled")
    assert messages.finish_pending(account, campaign_id, M.CANCELLED, reason="cancelled") == 0


# --- requeue_failed -------------------------------------------------------------------------


def test_requeue_failed_puts_failed_messages_back_in_the_queue_as_new(account: Database) -> None:
    campaign_id, ids = _queued(account, 3)
    for message_id in ids[:2]:
        messages.start_attempt(account, message_id, reconcile_window=WINDOW)
        _fail(account, message_id, final=True)
    messages.record_accepted(account, ids[2], "wamid.1")
    assert messages.requeue_failed(account, campaign_id) == 2
    for message_id in ids[:2]:
        row = _row(account, message_id)
        assert (row.status, row.attempts) == ("queued", 0)
        assert (row.error_class, row.error_code, row.error_title, row.failed_at) == (None,) * 4
    assert _row(account, ids[2]).status == "sent"
    assert messages.page_message_ids(account, campaign_id) == ids[:2]


def test_requeue_failed_retries_the_senders_messaging_limit_but_not_real_blocks(
    account: Database,
) -> None:
    campaign_id, (limited, blocked, invalid) = _queued(account, 3)
    _fail(account, limited, ErrorClass.MESSAGING_LIMITED, final=True)
    _fail(account, blocked, ErrorClass.BLOCKED, final=True)
    _fail(account, invalid, ErrorClass.INVALID_CONTACT, final=True)
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
    campaign_id, (checked_out, refused_by_whatsapp) = _queued(account, 2)
    _set(account, checked_out, status="failed", error_class="template", error_title="no image")
    _fail(account, refused_by_whatsapp, ErrorClass.TEMPLATE, final=True, code=132000)
    assert messages.requeue_failed(account, campaign_id) == 1
    assert _statuses(account, [checked_out, refused_by_whatsapp]) == [M.FAILED, M.QUEUED]


def test_requeue_failed_skips_messages_whatsapp_accepted_then_failed(account: Database) -> None:
    """A `failed` webhook after `sent`: the message has a provider id, so it is not resent."""
    campaign_id, (message_id,) = _queued(account)
    _set(account, message_id, status="failed", provider_message_id="wamid.1")
    assert messages.requeue_failed(account, campaign_id) == 0
    assert _row(account, message_id).status == "failed"


def test_requeue_failed_again_finds_nothing(account: Database) -> None:
    campaign_id, (message_id,) = _queued(account)
    _fail(account, message_id, final=True)
    messages.requeue_failed(account, campaign_id)
    assert messages.requeue_failed(account, campaign_id) == 0


def test_requeue_failed_leaves_other_campaigns_alone(account: Database) -> None:
    campaign_id, _ = _queued(account)
    _, (other,) = _queued(account, first_phone=100)
    _fail(account, other, final=True)
    assert messages.requeue_failed(account, campaign_id) == 0
    assert _row(account, other).status == "failed"


# --- count_by_status and error_summary ------------------------------------------------------


def test_count_by_status_counts_the_campaigns_messages_per_status(account: Database) -> None:
    campaign_id, ids = _queued(account, 6)
    _set(account, ids[:3], status="sent")
    _set(account, ids[3], status="failed")
    _queued(account, 4, first_phone=100)
    assert messages.count_by_status(account, campaign_id) == {M.SENT: 3, M.FAILED: 1, M.QUEUED: 2}


def test_count_by_status_of_a_campaign_without_messages_is_empty(account: Database) -> None:
    campaign_id, _ = _campaign(account)
    assert messages.count_by_status(account, campaign_id) == {}


def test_error_summary_groups_failures_by_code_and_title_most_frequent_first(
    account: Database,
) -> None:
    campaign_id, ids = _queued(account, 8)
    for message_id in ids[:3]:
        _fail(account, message_id, ErrorClass.INVALID_CONTACT, final=True, code=131026, title="U")
    for message_id in ids[3:5]:
        _fail(account, message_id, ErrorClass.FAILED, final=True, code=131000, title="Wrong")
    _fail(account, ids[5], ErrorClass.BLOCKED, final=True, code=131031, title="Locked")
    _fail(account, ids[6], ErrorClass.TRANSIENT, code=130429, title="Rate limit hit")  # retrying
    messages.record_accepted(account, ids[7], "wamid.1")
    assert messages.error_summary(account, campaign_id) == [
        ErrorCount(code=131026, title="U", count=3),
        ErrorCount(code=131000, title="Wrong", count=2),
        ErrorCount(code=131031, title="Locked", count=1),
    ]


def test_error_summary_keeps_only_the_most_frequent_groups(account: Database) -> None:
    campaign_id, ids = _queued(account, 3)
    _fail(account, ids[0], final=True, code=131000, title="Wrong")
    _fail(account, ids[1], final=True, code=131000, title="Wrong")
    _fail(account, ids[2], final=True, code=131049, title="Not delivered")
    assert messages.error_summary(account, campaign_id, limit=1) == [
        ErrorCount(code=131000, title="Wrong", count=2)
    ]


def test_error_summary_of_a_campaign_without_failures_is_empty(account: Database) -> None:
    campaign_id, _ = _queued(account, 2)
    assert messages.error_summary(account, campaign_id) == []
