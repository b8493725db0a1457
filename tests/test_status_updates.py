"""Status webhooks and inbound replies applied to the store: monotonic and idempotent."""

import threading

import pytest
from sqlalchemy import select, update

from tests.webhook_helpers import (
    ACCOUNT_ID,
    T0,
    charged_credits,
    later,
    message,
    opted_out_phones,
    seed_messages,
)
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.store.accounts import release_credits
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import MessageRow, OptOut
from whatsapp_campaigns.store.status_updates import (
    AppliedCounts,
    InboundReply,
    StatusUpdate,
    _reconcile_by_callback_data,
    apply_inbound_replies,
    apply_status_updates,
)

SENT, DELIVERED, READ, FAILED = (
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.FAILED,
)


def _replies(db: Database, *replies: InboundReply) -> AppliedCounts:
    return apply_inbound_replies(db, replies, account_id=ACCOUNT_ID)


def _opted_out_keywords(db: Database) -> dict[str, str | None]:
    with db.session() as session:
        rows = session.execute(select(OptOut.phone_e164, OptOut.keyword))
        return {phone: keyword for phone, keyword in rows}


def test_in_order_statuses_advance_and_record_their_times(db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    counts = apply_status_updates(
        db, [StatusUpdate(pid, DELIVERED, later(1)), StatusUpdate(pid, READ, later(2))]
    )
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.delivered_at, row.read_at) == ("read", later(1), later(2))
    assert counts == AppliedCounts(applied=2)


def test_applying_the_same_batch_twice_changes_nothing_the_second_time(db: Database) -> None:
    seeded = seed_messages(db, 3)
    batch = [StatusUpdate(pid, DELIVERED, later(1)) for pid in seeded.provider_ids if pid]
    apply_status_updates(db, batch)
    before = [message(db, m).updated_at for m in seeded.message_ids]
    again = apply_status_updates(db, batch)
    assert again == AppliedCounts(ignored_stale=3)
    assert [message(db, m).updated_at for m in seeded.message_ids] == before


def test_delivered_arriving_after_read_does_not_move_back(db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    apply_status_updates(db, [StatusUpdate(pid, READ, later(2))])
    counts = apply_status_updates(db, [StatusUpdate(pid, DELIVERED, later(1))])
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.delivered_at) == ("read", None)
    assert counts == AppliedCounts(ignored_stale=1)


def test_one_batch_holding_read_before_sent_ends_read(db: Database) -> None:
    seeded = seed_messages(db, status=MessageStatus.SENDING)
    pid = seeded.provider_ids[0]
    assert pid
    apply_status_updates(
        db,
        [
            StatusUpdate(pid, READ, later(3)),
            StatusUpdate(pid, DELIVERED, later(2)),
            StatusUpdate(pid, SENT, later(1)),
        ],
    )
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.sent_at, row.delivered_at, row.read_at) == (
        "read",
        later(1),
        later(2),
        later(3),
    )


def test_failed_after_sent_stores_the_error(db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    update = StatusUpdate(pid, FAILED, later(1), error_code=131026, error_title="Undeliverable")
    apply_status_updates(db, [update])
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.error_code, row.error_title, row.failed_at) == (
        "failed",
        131026,
        "Undeliverable",
        later(1),
    )


def test_failed_without_error_details_still_fails(db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    apply_status_updates(db, [StatusUpdate(pid, FAILED, later(1))])
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.error_code, row.error_title) == ("failed", None, None)


def test_failed_after_delivered_is_ignored(db: Database) -> None:
    seeded = seed_messages(db, status=MessageStatus.DELIVERED)
    pid = seeded.provider_ids[0]
    assert pid
    counts = apply_status_updates(db, [StatusUpdate(pid, FAILED, later(1), error_code=131026)])
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.error_code, row.failed_at) == ("delivered", None, None)
    assert counts == AppliedCounts(ignored_stale=1)


def test_delivered_in_the_same_batch_wins_over_failed(db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    apply_status_updates(
        db,
        [
            StatusUpdate(pid, DELIVERED, later(2)),
            StatusUpdate(pid, FAILED, later(1), error_code=131026, error_title="Undeliverable"),
        ],
    )
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.error_code) == ("delivered", None)


def test_unknown_provider_id_is_matched_by_callback_data_and_stored(db: Database) -> None:
    seeded = seed_messages(db, status=MessageStatus.SENDING, with_provider_id=False)
    message_id = seeded.message_ids[0]
    counts = apply_status_updates(
        db,
        [StatusUpdate("wamid.lost", SENT, later(1), biz_opaque_callback_data=str(message_id))],
    )
    row = message(db, message_id)
    assert (row.provider_message_id, row.status, row.sent_at) == ("wamid.lost", "sent", later(1))
    assert counts == AppliedCounts(applied=1)


@pytest.mark.parametrize(
    ("given_up_as", "reason"),
    [(MessageStatus.CANCELLED, "campaign cancelled"), (FAILED, "no answer from WhatsApp")],
)
def test_a_sent_webhook_for_a_message_we_had_given_up_makes_it_sent(
    db: Database, given_up_as: MessageStatus, reason: str
) -> None:
    """WhatsApp accepted it after all (the send's answer was lost): it was sent."""
    seeded = seed_messages(db, status=given_up_as, with_provider_id=False)
    message_id = seeded.message_ids[0]
    with db.session() as session:
        session.execute(
            update(MessageRow).where(MessageRow.id == message_id).values(error_title=reason)
        )
    counts = apply_status_updates(
        db, [StatusUpdate("wamid.late", SENT, later(1), biz_opaque_callback_data=str(message_id))]
    )
    row = message(db, message_id)
    assert (row.provider_message_id, row.status, row.error_title) == ("wamid.late", "sent", None)
    assert counts == AppliedCounts(applied=1)


def test_a_failed_webhook_for_a_message_we_had_cancelled_keeps_whatsapps_error(
    db: Database,
) -> None:
    seeded = seed_messages(db, status=MessageStatus.CANCELLED, with_provider_id=False)
    message_id = seeded.message_ids[0]
    apply_status_updates(
        db,
        [
            StatusUpdate(
                "wamid.late",
                FAILED,
                later(1),
                biz_opaque_callback_data=str(message_id),
                error_code=131026,
                error_title="Undeliverable",
            )
        ],
    )
    row = message(db, message_id)
    assert (row.status, row.error_code, row.error_title) == ("failed", 131026, "Undeliverable")


def test_a_message_reconciled_by_callback_data_is_charged_once_when_settled(
    db: Database,
) -> None:
    seeded = seed_messages(db, status=MessageStatus.SENDING, with_provider_id=False)
    data = str(seeded.message_ids[0])
    apply_status_updates(db, [StatusUpdate("wamid.lost", SENT, later(1), data)])
    apply_status_updates(db, [StatusUpdate("wamid.lost", DELIVERED, later(2), data)])
    release_credits(db, "c1", credits_per_message=1)
    assert charged_credits(db) == 1


def test_a_provider_id_stored_concurrently_still_gets_its_status(db: Database) -> None:
    seeded = seed_messages(db, status=MessageStatus.SENDING, with_provider_id=False)
    message_id = seeded.message_ids[0]
    results: list[AppliedCounts] = []
    webhook = StatusUpdate("wamid.race", DELIVERED, later(1), str(message_id))
    worker = threading.Thread(target=lambda: results.append(apply_status_updates(db, [webhook])))
    # The send stores its provider id while the webhook's transaction is already running
    # (on PostgreSQL it then waits on the row lock; SQLite serializes the two).
    with db.session() as session:
        session.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id)
            .values(provider_message_id="wamid.race", status="sent")
        )
        worker.start()
        worker.join(timeout=0.5)
    worker.join(timeout=30)
    assert results == [AppliedCounts(applied=1)]
    assert message(db, message_id).status == "delivered"


def test_callback_data_never_replaces_a_stored_provider_id(db: Database) -> None:
    seeded = seed_messages(db)
    counts = apply_status_updates(
        db, [StatusUpdate("wamid.other", DELIVERED, later(1), str(seeded.message_ids[0]))]
    )
    row = message(db, seeded.message_ids[0])
    assert (row.provider_message_id, row.status) == (seeded.provider_ids[0], "sent")
    assert counts == AppliedCounts(unknown=1)


def test_unknown_ids_are_counted_not_raised(db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    counts = apply_status_updates(
        db,
        [
            StatusUpdate(pid, DELIVERED, later(1)),
            StatusUpdate("wamid.nobody", DELIVERED, later(1)),
            StatusUpdate("wamid.nobody2", READ, later(1), biz_opaque_callback_data="999999"),
        ],
    )
    assert counts == AppliedCounts(applied=1, unknown=2)


@pytest.mark.parametrize("data", ["9" * 40, "18446744073709551616", "\u0661\u0662", "-3", "0", "x"])
def test_callback_data_that_is_no_message_id_of_ours_leaves_the_status_to_its_provider_id(
    db: Database, data: str
) -> None:
    """A forged or foreign biz_opaque_callback_data (too long for an id, non-ASCII digits...)
    neither fails the batch nor matches a message: the status applies by provider id."""
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    counts = apply_status_updates(
        db,
        [
            StatusUpdate(pid, DELIVERED, later(1), biz_opaque_callback_data=data),
            StatusUpdate("wamid.nobody", READ, later(1), biz_opaque_callback_data=data),
        ],
    )
    assert counts == AppliedCounts(applied=1, unknown=1)
    assert message(db, seeded.message_ids[0]).status == "delivered"


def test_reply_with_context_marks_that_message_responded(db: Database) -> None:
    seeded = seed_messages(db, 2, status=MessageStatus.READ)
    context = seeded.provider_ids[0]
    phone = message(db, seeded.message_ids[0]).phone_e164
    counts = _replies(db, InboundReply(phone, "Thanks!", later(5), context))
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.responded_at) == ("responded", later(5))
    assert message(db, seeded.message_ids[1]).status == "read"
    assert counts == AppliedCounts(applied=1)


def test_reply_without_context_marks_the_latest_message_to_that_phone(db: Database) -> None:
    older = seed_messages(db, campaign_id="c1", sent_at=T0)
    newer = seed_messages(db, campaign_id="c2", sent_at=later(60))
    phone = message(db, newer.message_ids[0]).phone_e164
    _replies(db, InboundReply(phone, "Who is this?", later(90)))
    assert message(db, newer.message_ids[0]).status == "responded"
    assert message(db, older.message_ids[0]).status == "sent"


def test_reply_a_day_after_the_message_matches_nothing(db: Database) -> None:
    seeded = seed_messages(db)
    phone = message(db, seeded.message_ids[0]).phone_e164
    counts = _replies(db, InboundReply(phone, "hello?", later(25 * 60)))
    assert message(db, seeded.message_ids[0]).status == "sent"
    assert counts == AppliedCounts(unknown=1)


def test_a_repeated_reply_changes_nothing(db: Database) -> None:
    seeded = seed_messages(db, status=MessageStatus.DELIVERED)
    phone = message(db, seeded.message_ids[0]).phone_e164
    reply = InboundReply(phone, "ok", later(5), seeded.provider_ids[0])
    _replies(db, reply)
    assert _replies(db, reply) == AppliedCounts(ignored_stale=1)
    assert message(db, seeded.message_ids[0]).responded_at == later(5)


def test_stop_reply_opts_the_number_out_and_marks_responded(db: Database) -> None:
    seeded = seed_messages(db, status=MessageStatus.READ)
    phone = message(db, seeded.message_ids[0]).phone_e164
    counts = _replies(db, InboundReply(phone, "  stop ", later(5)))
    assert opted_out_phones(db) == {phone}
    assert message(db, seeded.message_ids[0]).status == "responded"
    assert counts == AppliedCounts(applied=1, opted_out=1)


def test_stop_from_a_number_we_never_messaged_still_opts_it_out(db: Database) -> None:
    seed_messages(db)
    counts = _replies(db, InboundReply("+12025559999", "UNSUBSCRIBE", later(5)))
    assert opted_out_phones(db) == {"+12025559999"}
    assert counts == AppliedCounts(unknown=1, opted_out=1)


def test_a_reply_that_only_mentions_stop_does_not_opt_out(db: Database) -> None:
    seeded = seed_messages(db, status=MessageStatus.READ)
    phone = message(db, seeded.message_ids[0]).phone_e164
    _replies(db, InboundReply(phone, "please don't stop the offers", later(5)))
    assert opted_out_phones(db) == set()
    assert message(db, seeded.message_ids[0]).status == "responded"


def test_a_keyword_of_the_campaigns_policy_opts_the_number_out(db: Database) -> None:
    seeded = seed_messages(db, policy={"stop_keywords": ["BAJA", "NO MAS"]})
    phone = message(db, seeded.message_ids[0]).phone_e164
    counts = _replies(db, InboundReply(phone, " baja ", later(5)))
    assert _opted_out_keywords(db) == {phone: "BAJA"}
    assert counts == AppliedCounts(applied=1, opted_out=1)


def test_a_default_keyword_the_campaigns_policy_left_out_does_not_opt_out(db: Database) -> None:
    seeded = seed_messages(db, policy={"stop_keywords": ["BAJA"]})
    phone = message(db, seeded.message_ids[0]).phone_e164
    _replies(db, InboundReply(phone, "STOP", later(5)))
    assert opted_out_phones(db) == set()


def test_the_keywords_of_the_campaign_the_reply_answers_apply(db: Database) -> None:
    spanish = seed_messages(db, campaign_id="c1", policy={"stop_keywords": ["BAJA"]})
    english = seed_messages(db, campaign_id="c2", first_phone=12025550300)
    to_spanish = message(db, spanish.message_ids[0]).phone_e164
    to_english = message(db, english.message_ids[0]).phone_e164
    _replies(
        db,
        InboundReply(to_spanish, "stop", later(5), spanish.provider_ids[0]),
        InboundReply(to_english, "stop", later(5), english.provider_ids[0]),
    )
    assert opted_out_phones(db) == {to_english}


@pytest.mark.parametrize("text", ["stop all", "  Stop   ALL\t", "STOP\nALL", "opt  out"])
def test_stop_keywords_ignore_case_and_whitespace(db: Database, text: str) -> None:
    seeded = seed_messages(db)
    phone = message(db, seeded.message_ids[0]).phone_e164
    _replies(db, InboundReply(phone, text, later(5)))
    assert opted_out_phones(db) == {phone}


def test_a_provider_id_committed_between_the_batch_reads_still_gets_its_status(
    db: Database,
) -> None:
    """The send's commit lands after the batch looked for the id and before it reads the
    message named by biz_opaque_callback_data: the id is the same, the status applies."""
    seeded = seed_messages(db, status=MessageStatus.SENT, with_provider_id=False)
    message_id = seeded.message_ids[0]
    with db.session() as session:
        session.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id)
            .values(provider_message_id="wamid.late")
        )
    webhook = StatusUpdate("wamid.late", DELIVERED, later(1), str(message_id))
    with db.session() as session:
        assert _reconcile_by_callback_data(session, [webhook]) == {"wamid.late"}
