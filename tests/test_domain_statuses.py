"""Message statuses only move forward (SPEC §3): late, duplicated or reordered updates never
move a message backwards; `failed` may replace `sent` but not `delivered`/`read`/`responded`."""

from collections.abc import Iterable
from itertools import pairwise, permutations

import pytest

from whatsapp_campaigns.domain.statuses import (
    ACCEPTED_MESSAGE_STATUSES,
    MESSAGE_STATUS_RANK,
    TERMINAL_CAMPAIGN_STATUSES,
    CampaignStatus,
    MessageStatus,
    can_advance,
    statuses_that_can_become,
)

M = MessageStatus
HAPPY_PATH = [M.QUEUED, M.SENDING, M.SENT, M.DELIVERED, M.READ, M.RESPONDED]
FAILURES = [M.FAILED, M.INVALID_CONTACT, M.BLOCKED]
AFTER_DELIVERY = [M.DELIVERED, M.READ, M.RESPONDED]


def _apply(start: MessageStatus, updates: Iterable[MessageStatus]) -> MessageStatus:
    """The status after applying `updates` in order, ignoring those that may not apply."""
    status = start
    for update in updates:
        if can_advance(status, update):
            status = update
    return status


def test_every_message_status_has_a_rank() -> None:
    assert set(MESSAGE_STATUS_RANK) == set(MessageStatus)


@pytest.mark.parametrize(("current", "new"), list(pairwise(HAPPY_PATH)))
def test_each_step_of_the_happy_path_advances(current: MessageStatus, new: MessageStatus) -> None:
    assert can_advance(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(HAPPY_PATH[i], HAPPY_PATH[j]) for i in range(6) for j in range(i + 2, 6)],
)
def test_a_later_status_may_skip_the_ones_in_between(
    current: MessageStatus, new: MessageStatus
) -> None:
    assert can_advance(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(HAPPY_PATH[j], HAPPY_PATH[i]) for i in range(6) for j in range(i + 1, 6)],
)
def test_a_message_never_moves_back_along_the_happy_path(
    current: MessageStatus, new: MessageStatus
) -> None:
    assert not can_advance(current, new)


@pytest.mark.parametrize("status", list(MessageStatus))
def test_a_duplicate_update_changes_nothing(status: MessageStatus) -> None:
    assert not can_advance(status, status)


def test_sending_and_retrying_alternate_between_attempts() -> None:
    assert can_advance(M.SENDING, M.RETRYING)
    assert can_advance(M.RETRYING, M.SENDING)


@pytest.mark.parametrize("pending", [M.SENDING, M.RETRYING])
def test_a_retried_message_does_not_go_back_to_queued(pending: MessageStatus) -> None:
    assert not can_advance(pending, M.QUEUED)


def test_a_failed_webhook_may_replace_sent() -> None:
    assert can_advance(M.SENT, M.FAILED)


@pytest.mark.parametrize("status", AFTER_DELIVERY)
def test_a_failed_webhook_never_replaces_a_delivery(status: MessageStatus) -> None:
    assert not can_advance(status, M.FAILED)


@pytest.mark.parametrize("status", AFTER_DELIVERY)
def test_a_delivery_wins_over_a_recorded_failure(status: MessageStatus) -> None:
    assert can_advance(M.FAILED, status)


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("pending", [M.QUEUED, M.SENDING, M.RETRYING])
def test_a_pending_message_may_fail(pending: MessageStatus, failure: MessageStatus) -> None:
    assert can_advance(pending, failure)


@pytest.mark.parametrize(("current", "new"), list(permutations(FAILURES, 2)))
def test_one_failure_outcome_never_replaces_another(
    current: MessageStatus, new: MessageStatus
) -> None:
    assert not can_advance(current, new)


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_message_does_not_become_sent_again(failure: MessageStatus) -> None:
    assert not can_advance(failure, M.SENT)


@pytest.mark.parametrize("outcome", [M.SUPPRESSED, M.CANCELLED])
@pytest.mark.parametrize("pending", [M.QUEUED, M.SENDING, M.RETRYING])
def test_a_pending_message_may_be_suppressed_or_cancelled(
    pending: MessageStatus, outcome: MessageStatus
) -> None:
    assert can_advance(pending, outcome)


@pytest.mark.parametrize("outcome", [M.SUPPRESSED, M.CANCELLED])
@pytest.mark.parametrize("earlier", [M.QUEUED, M.SENDING, M.RETRYING, M.SENT])
def test_a_suppressed_or_cancelled_message_is_never_sent_again(
    outcome: MessageStatus, earlier: MessageStatus
) -> None:
    assert not can_advance(outcome, earlier)


@pytest.mark.parametrize(
    ("a", "b"), [(a, b) for a in MessageStatus for b in MessageStatus if a != b]
)
def test_no_two_statuses_can_replace_each_other_except_sending_and_retrying(
    a: MessageStatus, b: MessageStatus
) -> None:
    both = can_advance(a, b) and can_advance(b, a)
    assert both == ({a, b} == {M.SENDING, M.RETRYING})


@pytest.mark.parametrize("order", list(permutations([M.SENT, M.DELIVERED, M.READ])))
def test_webhooks_in_any_order_end_at_the_furthest_status(order: tuple[MessageStatus, ...]) -> None:
    assert _apply(M.SENDING, order) is M.READ


@pytest.mark.parametrize("order", list(permutations([M.SENT, M.FAILED, M.DELIVERED])))
def test_a_failure_and_a_delivery_in_any_order_end_delivered(
    order: tuple[MessageStatus, ...],
) -> None:
    assert _apply(M.SENDING, order) is M.DELIVERED


@pytest.mark.parametrize("order", list(permutations([M.SENT, M.FAILED])))
def test_sent_and_failed_in_any_order_end_failed(order: tuple[MessageStatus, ...]) -> None:
    assert _apply(M.SENDING, order) is M.FAILED


def test_replaying_every_update_twice_ends_where_once_does() -> None:
    updates = [M.SENDING, M.SENT, M.DELIVERED, M.READ, M.RESPONDED]
    assert _apply(M.QUEUED, updates + updates) is _apply(M.QUEUED, updates) is M.RESPONDED


@pytest.mark.parametrize("new", list(MessageStatus))
def test_statuses_that_can_become_is_the_set_form_of_can_advance(new: MessageStatus) -> None:
    assert statuses_that_can_become(new) == {s for s in MessageStatus if can_advance(s, new)}


def test_only_a_pending_message_or_a_sent_one_can_become_failed() -> None:
    assert statuses_that_can_become(M.FAILED) == {M.QUEUED, M.SENDING, M.RETRYING, M.SENT}


def test_sent_can_be_reached_only_from_pending_statuses() -> None:
    assert statuses_that_can_become(M.SENT) == {M.QUEUED, M.SENDING, M.RETRYING}


def test_sending_can_be_reached_from_queued_and_retrying() -> None:
    assert statuses_that_can_become(M.SENDING) == {M.QUEUED, M.RETRYING}


def test_retrying_can_be_reached_from_queued_and_sending() -> None:
    assert statuses_that_can_become(M.RETRYING) == {M.QUEUED, M.SENDING}


def test_nothing_becomes_queued_again() -> None:
    assert statuses_that_can_become(M.QUEUED) == frozenset()


def test_responded_can_be_reached_from_everything_else() -> None:
    assert statuses_that_can_become(M.RESPONDED) == set(MessageStatus) - {M.RESPONDED}


def test_accepted_statuses_are_sent_and_after() -> None:
    assert {M.SENT, *AFTER_DELIVERY} == ACCEPTED_MESSAGE_STATUSES


@pytest.mark.parametrize("status", list(CampaignStatus))
def test_a_campaign_is_terminal_only_when_completed_failed_or_cancelled(
    status: CampaignStatus,
) -> None:
    expected = status in {CampaignStatus.COMPLETED, CampaignStatus.FAILED, CampaignStatus.CANCELLED}
    assert status.is_terminal == expected
    assert (status in TERMINAL_CAMPAIGN_STATUSES) == expected
