"""A message's send attempts in the store: claim one, record what came of it, and the writes of
concurrent sends grouped in one transaction (store/attempts.py; SPEC §4 rules 6, 7 and 12)."""

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from tests.store_helpers import (
    ACCOUNT,
    SENDER,
    fail_attempt,
    message_row,
    phones,
    seed_queued,
    set_messages,
)
from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store import attempts, send_slots
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import CampaignRow, SenderNumber, utcnow
from whatsapp_campaigns.store.send_slots import Slot

S = CampaignStatus
M = MessageStatus
WINDOW = timedelta(minutes=5)  # the reconcile window given to start_attempt


# --- start_attempt --------------------------------------------------------------------------


def test_start_attempt_claims_a_queued_message_with_everything_the_send_needs(
    account: Database,
) -> None:
    campaign_id, (message_id,) = seed_queued(account, policy={"max_attempts": 5})
    start = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.settled, start.campaign_halted, start.unresolved_since) == (None, None, None)
    job = start.job
    assert job is not None
    assert (job.message_id, job.campaign_id, job.account_id) == (message_id, campaign_id, ACCOUNT)
    assert (job.sender_phone_number_id, job.phone_e164) == (SENDER, phones(1)[0])
    assert (job.template_name, job.language, job.variables) == ("spring_sale", "en", {"name": "C0"})
    assert (job.attempt, job.policy.max_attempts) == (1, 5)


def test_concurrent_claims_of_one_message_hand_it_out_once(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    claimants = 8
    barrier = threading.Barrier(claimants)

    def claim() -> attempts.AttemptStart:
        barrier.wait()
        return attempts.start_attempt(account, message_id, reconcile_window=WINDOW)

    with ThreadPoolExecutor(claimants) as pool:
        starts = list(pool.map(lambda _: claim(), range(claimants)))

    assert sum(1 for start in starts if start.job is not None) == 1
    assert message_row(account, message_id).attempts == 1


def test_start_attempt_marks_the_message_sending_and_counts_the_attempt(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    before = utcnow()
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    row = message_row(account, message_id)
    assert (row.status, row.attempts) == ("sending", 1)
    assert row.sending_at is not None and row.sending_at >= before


def test_start_attempt_on_a_retrying_message_is_the_next_attempt(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    set_messages(account, message_id, status="retrying", attempts=1)
    start = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert start.job is not None and start.job.attempt == 2
    assert message_row(account, message_id).attempts == 2


def test_start_attempt_while_the_campaign_is_queued_claims_the_message(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account, status=S.QUEUED)
    assert attempts.start_attempt(account, message_id, reconcile_window=WINDOW).job is not None


def test_an_accepted_message_is_settled_and_not_sent_again(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    attempts.record_accepted(account, message_id, "wamid.1")
    start = attempts.start_attempt(account, message_id, reconcile_window=timedelta(0))
    assert (start.job, start.settled) == (None, M.SENT)
    assert message_row(account, message_id).attempts == 1


def test_a_message_with_a_provider_id_is_settled_even_if_still_sending(
    account: Database,
) -> None:
    """A webhook reconciled the id (biz_opaque_callback_data) before record_accepted ran."""
    _, (message_id,) = seed_queued(account)
    set_messages(account, message_id, status="sending", provider_message_id="wamid.1", attempts=1)
    start = attempts.start_attempt(account, message_id, reconcile_window=timedelta(0))
    assert start.job is None and start.settled is M.SENDING
    assert message_row(account, message_id).attempts == 1


@pytest.mark.parametrize(
    "status", [M.DELIVERED, M.FAILED, M.INVALID_CONTACT, M.BLOCKED, M.SUPPRESSED, M.CANCELLED]
)
def test_a_message_with_a_final_status_is_settled(account: Database, status: M) -> None:
    _, (message_id,) = seed_queued(account)
    set_messages(account, message_id, status=status.value)
    start = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.job, start.settled) == (None, status)
    assert message_row(account, message_id).status == status.value


@pytest.mark.parametrize("campaign_status", [S.PAUSED, S.CANCELLED])
def test_start_attempt_in_a_halted_campaign_yields_no_job_and_leaves_the_message_queued(
    account: Database, campaign_status: CampaignStatus
) -> None:
    _, (message_id,) = seed_queued(account, status=campaign_status)
    start = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.job, start.campaign_halted) == (None, campaign_status.value)
    row = message_row(account, message_id)
    assert (row.status, row.attempts, row.sending_at) == ("queued", 0, None)


def test_an_accepted_message_in_a_paused_campaign_is_settled_not_halted(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account, status=S.PAUSED)
    set_messages(account, message_id, status="sent", provider_message_id="wamid.1")
    start = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.settled, start.campaign_halted) == (M.SENT, None)


def test_an_unknown_outcome_is_unresolved_within_the_reconcile_window(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    sending_at = utcnow() - timedelta(seconds=10)
    set_messages(account, message_id, status="sending", attempts=1, sending_at=sending_at)
    start = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert (start.job, start.unresolved_since) == (None, sending_at)
    row = message_row(account, message_id)
    assert (row.status, row.attempts, row.sending_at) == ("sending", 1, sending_at)


def test_an_unknown_outcome_is_sent_again_after_the_reconcile_window(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    set_messages(
        account, message_id, status="sending", attempts=1, sending_at=utcnow() - 2 * WINDOW
    )
    start = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert start.unresolved_since is None
    assert start.job is not None and start.job.attempt == 2
    row = message_row(account, message_id)
    assert row.attempts == 2 and row.sending_at is not None
    assert row.sending_at > utcnow() - WINDOW


def test_a_timed_out_attempt_waits_for_its_webhook_before_the_next_send(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    fail_attempt(account, message_id, outcome_unknown=True)
    waiting = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert waiting.job is None
    assert waiting.unresolved_since == message_row(account, message_id).sending_at


def test_start_attempt_of_an_unknown_message_is_a_lookup_error(account: Database) -> None:
    with pytest.raises(LookupError, match="message 999 not found"):
        attempts.start_attempt(account, 999, reconcile_window=WINDOW)


# --- record_accepted ------------------------------------------------------------------------


def test_record_accepted_stores_the_provider_id_and_marks_the_message_sent(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert attempts.record_accepted(account, message_id, "wamid.1") is M.SENT
    row = message_row(account, message_id)
    assert (row.status, row.provider_message_id) == ("sent", "wamid.1")
    assert row.sent_at is not None


def test_record_accepted_twice_is_harmless(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    attempts.record_accepted(account, message_id, "wamid.1")
    sent_at = message_row(account, message_id).sent_at
    assert attempts.record_accepted(account, message_id, "wamid.1") is M.SENT
    row = message_row(account, message_id)
    assert (row.status, row.provider_message_id, row.sent_at) == ("sent", "wamid.1", sent_at)


def test_record_accepted_keeps_a_delivered_status_from_an_earlier_webhook(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    delivered_at = utcnow()
    set_messages(
        account,
        message_id,
        status="delivered",
        provider_message_id="wamid.1",
        delivered_at=delivered_at,
    )
    assert attempts.record_accepted(account, message_id, "wamid.1") is M.DELIVERED
    row = message_row(account, message_id)
    assert (row.status, row.delivered_at) == ("delivered", delivered_at)


def test_record_accepted_after_a_webhook_reconciled_the_id_marks_it_sent(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    set_messages(account, message_id, status="sending", provider_message_id="wamid.1", attempts=1)
    assert attempts.record_accepted(account, message_id, "wamid.1") is M.SENT
    assert message_row(account, message_id).status == "sent"


@pytest.mark.parametrize(
    ("given_up_as", "reason"),
    [(M.CANCELLED, "campaign cancelled"), (M.FAILED, "no answer from WhatsApp")],
)
def test_record_accepted_after_the_message_was_given_up_marks_it_sent_without_error(
    account: Database, given_up_as: M, reason: str
) -> None:
    _, (message_id,) = seed_queued(account)
    set_messages(account, message_id, status=given_up_as.value, error_title=reason, attempts=1)
    assert attempts.record_accepted(account, message_id, "wamid.1") is M.SENT
    row = message_row(account, message_id)
    assert (row.status, row.provider_message_id, row.error_title) == ("sent", "wamid.1", None)


def test_record_accepted_keeps_a_failure_whatsapp_reported_for_that_id(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    set_messages(
        account, message_id, status="failed", provider_message_id="wamid.1", error_code=131026
    )
    assert attempts.record_accepted(account, message_id, "wamid.1") is M.FAILED


def test_record_accepted_with_a_different_provider_id_is_refused(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.record_accepted(account, message_id, "wamid.1")
    with pytest.raises(ValueError, match=r"already has provider id wamid\.1"):
        attempts.record_accepted(account, message_id, "wamid.2")
    assert message_row(account, message_id).provider_message_id == "wamid.1"


def test_record_accepted_of_an_unknown_message_is_a_lookup_error(account: Database) -> None:
    with pytest.raises(LookupError, match="message 999 not found"):
        attempts.record_accepted(account, 999, "wamid.1")


# --- record_failure -------------------------------------------------------------------------


def test_a_failure_that_will_be_retried_makes_the_message_retrying(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    status = fail_attempt(
        account, message_id, ErrorClass.THROUGHPUT_LIMITED, code=130429, title="Rate"
    )
    assert status is M.RETRYING
    row = message_row(account, message_id)
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
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    status = fail_attempt(
        account, message_id, error_class, final=True, code=131026, title="Undeliverable"
    )
    assert status is final_status
    row = message_row(account, message_id)
    assert (row.status, row.error_class, row.error_code, row.error_title) == (
        final_status.value,
        error_class.value,
        131026,
        "Undeliverable",
    )
    assert row.failed_at is not None


def test_a_failure_with_an_unknown_outcome_leaves_the_message_sending(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    status = fail_attempt(account, message_id, code=None, title="timed out", outcome_unknown=True)
    assert status is M.SENDING
    row = message_row(account, message_id)
    assert (row.status, row.error_title) == ("sending", "timed out")


def test_the_reconcile_wait_after_an_unknown_outcome_counts_from_the_failure(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    set_messages(account, message_id, sending_at=utcnow() - 2 * WINDOW)  # a long attempt
    fail_attempt(account, message_id, code=None, title="timed out", outcome_unknown=True)

    again = attempts.start_attempt(account, message_id, reconcile_window=WINDOW)

    assert again.job is None and again.unresolved_since is not None


def test_resume_attempt_restarts_the_attempt_clock_while_the_campaign_sends(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    set_messages(account, message_id, sending_at=utcnow() - 2 * WINDOW)

    assert attempts.resume_attempt(account, message_id) is True
    row = message_row(account, message_id)
    assert row.status == "sending" and row.sending_at > utcnow() - WINDOW


def test_resume_attempt_hands_the_message_back_when_the_campaign_paused(
    account: Database,
) -> None:
    campaign_id, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    with account.session() as session:
        session.execute(
            update(CampaignRow).where(CampaignRow.id == campaign_id).values(status="paused")
        )

    assert attempts.resume_attempt(account, message_id) is False
    row = message_row(account, message_id)
    assert (row.status, row.attempts, row.sending_at) == ("queued", 0, None)


def test_a_final_failure_with_an_unknown_outcome_still_fails_the_message(
    account: Database,
) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.start_attempt(account, message_id, reconcile_window=WINDOW)
    assert fail_attempt(account, message_id, final=True, outcome_unknown=True) is M.FAILED
    assert message_row(account, message_id).status == "failed"


def test_a_late_failure_does_not_undo_a_delivered_webhook(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    set_messages(account, message_id, status="delivered", provider_message_id="wamid.1")
    assert fail_attempt(account, message_id, final=True) is M.DELIVERED
    row = message_row(account, message_id)
    assert (row.status, row.failed_at) == ("delivered", None)


def test_a_retriable_failure_does_not_undo_an_accepted_send(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    attempts.record_accepted(account, message_id, "wamid.1")
    assert fail_attempt(account, message_id) is M.SENT


def test_record_failure_of_an_unknown_message_is_a_lookup_error(account: Database) -> None:
    with pytest.raises(LookupError, match="message 999 not found"):
        fail_attempt(account, 999)


# --- write_send_group: the writes of concurrent sends, set-based ----------------------------


def _group(db: Database, writes: list[attempts.SendWrite]) -> list[object]:
    with db.transaction() as connection:
        return list(attempts.write_send_group(connection, writes))


def _claims(message_ids: list[int]) -> list[attempts.SendWrite]:
    return [attempts.Claim(m, WINDOW) for m in message_ids]


def _set_rate(db: Database, rate: int) -> None:
    """The sender's rate, at the start of a fresh second (so a short test stays inside it)."""
    with db.session() as session:
        session.execute(update(SenderNumber).values(rate_per_second=rate))
    time.sleep(math.ceil(time.time()) - time.time() + 0.01)


def _statements_of_a_group(db: Database, size: int) -> int:
    _, ids = seed_queued(db, 2 * size, first_phone=1000 * size)
    _group(db, _claims(ids[size:]))
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:  # half new claims, half accepted ids of the sends claimed before
        _group(db, _claims(ids[:size]) + [attempts.Accepted(m, f"w.{m}") for m in ids[size:]])
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return len(seen)


def test_a_group_takes_as_many_statements_for_forty_sends_as_for_two(account: Database) -> None:
    """Statement by statement, a group of fifty sends was two hundred round trips."""
    assert _statements_of_a_group(account, 40) == _statements_of_a_group(account, 2)


def test_a_group_answers_each_write_in_the_order_asked(account: Database) -> None:
    _, ids = seed_queued(account, 3)
    attempts.start_attempt(account, ids[2], reconcile_window=WINDOW)

    answers = _group(account, [attempts.Accepted(ids[2], "w.2"), *_claims([ids[1], ids[0]])])

    assert answers[0] is M.SENT
    starts = [a for a in answers[1:] if isinstance(a, attempts.AttemptStart)]
    assert [s.job.message_id for s in starts if s.job] == [ids[1], ids[0]]


def test_two_claims_of_one_message_in_one_group_hand_it_out_once(account: Database) -> None:
    _, (message_id,) = seed_queued(account)

    first, second = _group(account, _claims([message_id, message_id]))

    assert isinstance(first, attempts.AttemptStart) and first.job is not None
    assert isinstance(second, attempts.AttemptStart) and second.unresolved_since is not None
    assert message_row(account, message_id).attempts == 1


def test_a_claim_of_a_message_that_does_not_exist_fails_alone(account: Database) -> None:
    _, (message_id,) = seed_queued(account)

    missing, found = _group(account, _claims([999_999, message_id]))

    assert isinstance(missing, LookupError)
    assert isinstance(found, attempts.AttemptStart) and found.job is not None


def test_an_accepted_id_for_a_message_with_another_fails_alone_and_changes_nothing(
    account: Database,
) -> None:
    _, ids = seed_queued(account, 2)
    set_messages(account, ids[0], status="delivered", provider_message_id="wamid.first")

    other, accepted = _group(
        account, [attempts.Accepted(ids[0], "wamid.other"), attempts.Accepted(ids[1], "w.1")]
    )

    assert isinstance(other, ValueError) and "wamid.first" in str(other)
    assert accepted is M.SENT
    row = message_row(account, ids[0])
    assert (row.status, row.provider_message_id) == ("delivered", "wamid.first")


def test_a_group_s_claims_share_the_slots_left_in_the_second_lowest_ids_first(
    account: Database,
) -> None:
    _, ids = seed_queued(account, 3)
    _set_rate(account, 2)

    answers = _group(account, _claims([ids[2], ids[0], ids[1]]))

    won = {
        a.job.message_id: a.slot.won
        for a in answers
        if isinstance(a, attempts.AttemptStart) and a.job and a.slot
    }
    assert won == {ids[0]: True, ids[1]: True, ids[2]: False}


def test_a_claim_without_admission_takes_no_slot_and_carries_no_rate(account: Database) -> None:
    _, (message_id,) = seed_queued(account)

    (start,) = _group(account, [attempts.Claim(message_id, WINDOW, admit=False)])

    assert isinstance(start, attempts.AttemptStart) and start.job is not None
    assert (start.slot, start.job.sender_rate) == (None, None)
    with account.transaction() as connection:
        assert send_slots.admitted_per_second(connection, SENDER) == {}


def test_a_readmit_while_the_campaign_is_paused_hands_the_message_back(account: Database) -> None:
    campaign_id, (message_id,) = seed_queued(account)
    _group(account, _claims([message_id]))
    with account.session() as session:
        session.execute(
            update(CampaignRow).where(CampaignRow.id == campaign_id).values(status="paused")
        )

    (answer,) = _group(account, [attempts.Readmit(message_id, SENDER, 80)])

    assert answer is None
    row = message_row(account, message_id)
    assert (row.status, row.attempts, row.sending_at) == ("queued", 0, None)


def test_a_readmit_that_wins_a_slot_restarts_the_attempt_s_clock(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    set_messages(account, message_id, status="sending", attempts=1, sending_at=utcnow() - WINDOW)

    (slot,) = _group(account, [attempts.Readmit(message_id, SENDER, 80)])

    assert isinstance(slot, Slot) and slot.won
    sending_at = message_row(account, message_id).sending_at
    assert sending_at is not None and utcnow() - sending_at < timedelta(seconds=5)


def test_a_readmit_that_lets_the_second_go_by_counts_nothing_in_it(account: Database) -> None:
    _, (message_id,) = seed_queued(account)
    _set_rate(account, 1)
    _group(account, _claims([message_id]))

    (slot,) = _group(account, [attempts.Readmit(message_id, SENDER, 1, ask=False)])

    assert isinstance(slot, Slot) and not slot.won
    with account.transaction() as connection:
        assert list(send_slots.admitted_per_second(connection, SENDER).values()) == [1]
