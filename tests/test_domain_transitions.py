"""Which action each campaign status allows, why the others are refused, and which status
changes the engine may make (SPEC §3, §4 rule 2)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.domain.transitions import (
    CampaignAction,
    Refusal,
    allowed_actions,
    can_transition,
    check_action,
)

S = CampaignStatus
A = CampaignAction
DEFAULT = CampaignPolicy()
LOCKED = CampaignPolicy(lock_when_sending=True)
SEND_AT = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)

# The product's table (SPEC §3), written out independently of the code under test.
EXPECTED_ACTIONS: dict[CampaignStatus, set[CampaignAction]] = {
    S.DRAFT: {A.EDIT, A.SET_AUDIENCE, A.SCHEDULE, A.LAUNCH, A.TEST_SEND, A.DELETE, A.DUPLICATE},
    S.SCHEDULED: {A.EDIT, A.RESCHEDULE, A.CANCEL, A.DUPLICATE, A.TEST_SEND},
    S.QUEUED: {A.PAUSE, A.CANCEL, A.DUPLICATE, A.REPORT},
    S.SENDING: {A.PAUSE, A.CANCEL, A.DUPLICATE, A.REPORT},
    S.PAUSED: {A.RESUME, A.CANCEL, A.DUPLICATE, A.REPORT},
    S.COMPLETED: {A.REPORT, A.RETRY_FAILED, A.DUPLICATE},
    S.FAILED: {A.REPORT, A.RETRY_FAILED, A.DUPLICATE},
    S.CANCELLED: {A.REPORT, A.DUPLICATE},
}

EXPECTED_TRANSITIONS: dict[CampaignStatus, set[CampaignStatus]] = {
    S.DRAFT: {S.SCHEDULED, S.QUEUED},
    S.SCHEDULED: {S.QUEUED, S.CANCELLED, S.FAILED},
    S.QUEUED: {S.SENDING, S.PAUSED, S.FAILED, S.CANCELLED},
    S.SENDING: {S.PAUSED, S.COMPLETED, S.FAILED, S.CANCELLED},
    S.PAUSED: {S.SENDING, S.COMPLETED, S.FAILED, S.CANCELLED},
    S.COMPLETED: {S.QUEUED},
    S.FAILED: {S.QUEUED},
    S.CANCELLED: set(),
}

ALL_PAIRS = [(status, action) for status in CampaignStatus for action in CampaignAction]


def _reason(action: CampaignAction, status: CampaignStatus) -> str:
    refusal = check_action(action, status, DEFAULT)
    assert refusal is not None, f"{action} should be refused in {status}"
    return refusal.reason


# --- the action table -----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "action"), ALL_PAIRS)
def test_each_action_is_allowed_exactly_in_the_statuses_of_the_table(
    status: CampaignStatus, action: CampaignAction
) -> None:
    refusal = check_action(action, status, DEFAULT)
    assert (refusal is None) == (action in EXPECTED_ACTIONS[status])


@pytest.mark.parametrize(("status", "action"), ALL_PAIRS)
def test_a_refusal_names_the_action_and_the_status_and_gives_a_reason(
    status: CampaignStatus, action: CampaignAction
) -> None:
    refusal = check_action(action, status, DEFAULT)
    if refusal is None:
        return
    assert (refusal.action, refusal.status) == (action, status)
    assert refusal.reason.startswith("cannot ") and status.value in refusal.reason
    assert str(refusal) == refusal.reason


@pytest.mark.parametrize("status", list(CampaignStatus))
def test_allowed_actions_lists_the_table_row(status: CampaignStatus) -> None:
    assert set(allowed_actions(status, DEFAULT)) == EXPECTED_ACTIONS[status]


def test_allowed_actions_follow_the_order_of_the_actions() -> None:
    actions = allowed_actions(S.DRAFT, DEFAULT)
    assert actions == [a for a in CampaignAction if a in actions]


# --- refusal reasons ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.CANCELLED])
def test_a_finished_campaign_refuses_with_finished(status: CampaignStatus) -> None:
    assert _reason(A.PAUSE, status) == f"cannot pause: the campaign is {status.value} (finished)"


def test_a_finished_campaign_names_a_multiword_action_in_words() -> None:
    assert _reason(A.RETRY_FAILED, S.CANCELLED) == (
        "cannot retry failed: the campaign is cancelled (finished)"
    )


@pytest.mark.parametrize("status", [S.DRAFT, S.SCHEDULED, S.QUEUED, S.SENDING])
def test_resume_is_refused_unless_paused(status: CampaignStatus) -> None:
    assert _reason(A.RESUME, status) == (
        f"cannot resume: the campaign is {status.value}, not paused"
    )


@pytest.mark.parametrize("status", [S.DRAFT, S.SCHEDULED])
def test_pause_is_refused_before_sending_starts(status: CampaignStatus) -> None:
    assert _reason(A.PAUSE, status) == (
        f"cannot pause: the campaign is {status.value} and has not started sending"
    )


def test_pause_is_refused_while_paused() -> None:
    assert _reason(A.PAUSE, S.PAUSED) == "cannot pause: not allowed while the campaign is paused"


@pytest.mark.parametrize("status", [S.QUEUED, S.SENDING, S.PAUSED])
@pytest.mark.parametrize("action", [A.EDIT, A.SET_AUDIENCE])
def test_content_is_locked_once_the_campaign_runs(
    status: CampaignStatus, action: CampaignAction
) -> None:
    verb = action.value.replace("_", " ")
    assert _reason(action, status) == (
        f"cannot {verb}: content is locked once the campaign is {status.value}"
    )


def test_set_audience_is_refused_while_scheduled() -> None:
    assert _reason(A.SET_AUDIENCE, S.SCHEDULED) == (
        "cannot set audience: not allowed while the campaign is scheduled"
    )


@pytest.mark.parametrize("status", [S.DRAFT, S.QUEUED, S.SENDING, S.PAUSED])
def test_only_a_scheduled_campaign_can_be_rescheduled(status: CampaignStatus) -> None:
    assert _reason(A.RESCHEDULE, status) == (
        f"cannot reschedule: only a scheduled campaign can move (it is {status.value})"
    )


@pytest.mark.parametrize("status", [S.SCHEDULED, S.QUEUED, S.SENDING, S.PAUSED])
@pytest.mark.parametrize("action", [A.SCHEDULE, A.LAUNCH])
def test_schedule_and_launch_are_refused_once_scheduled(
    status: CampaignStatus, action: CampaignAction
) -> None:
    assert _reason(action, status) == (
        f"cannot {action.value}: the campaign is already {status.value}"
    )


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (A.DELETE, S.SCHEDULED),
        (A.DELETE, S.SENDING),
        (A.CANCEL, S.DRAFT),
        (A.REPORT, S.DRAFT),
        (A.REPORT, S.SCHEDULED),
        (A.TEST_SEND, S.QUEUED),
        (A.RETRY_FAILED, S.SENDING),
    ],
)
def test_other_refusals_say_what_cannot_be_done_in_which_status(
    action: CampaignAction, status: CampaignStatus
) -> None:
    verb = action.value.replace("_", " ")
    assert (
        _reason(action, status)
        == f"cannot {verb}: not allowed while the campaign is {status.value}"
    )


# --- the cancel cut-off (SPEC §4 rule 2) ----------------------------------------------------


def _cancel_at(now: datetime, policy: CampaignPolicy = DEFAULT) -> Refusal | None:
    return check_action(A.CANCEL, S.SCHEDULED, policy, now=now, send_at=SEND_AT)


def test_cancel_is_allowed_before_the_cut_off() -> None:
    assert _cancel_at(SEND_AT - timedelta(minutes=5, microseconds=1)) is None


def test_cancel_is_refused_exactly_at_the_cut_off() -> None:
    refusal = _cancel_at(SEND_AT - timedelta(minutes=5))
    assert refusal is not None and refusal.action is A.CANCEL


def test_cancel_is_refused_within_the_cut_off() -> None:
    assert _cancel_at(SEND_AT - timedelta(minutes=4, seconds=59)) is not None


def test_cancel_is_refused_after_the_send_time() -> None:
    assert _cancel_at(SEND_AT + timedelta(minutes=1)) is not None


def test_the_cut_off_refusal_names_the_cut_off_and_the_send_time() -> None:
    refusal = _cancel_at(SEND_AT - timedelta(minutes=1))
    assert refusal is not None
    assert refusal.reason == (
        "cancellation closed at 2030-03-01T08:55:00+00:00 "
        "(5 minutes before the send time 2030-03-01T09:00:00+00:00)"
    )


def test_the_cut_off_follows_the_policy() -> None:
    policy = CampaignPolicy(cancel_cutoff=timedelta(minutes=30))
    assert _cancel_at(SEND_AT - timedelta(minutes=31), policy) is None
    refusal = _cancel_at(SEND_AT - timedelta(minutes=29), policy)
    assert refusal is not None and "30 minutes before" in refusal.reason


def test_the_cut_off_compares_instants_across_timezones() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert _cancel_at((SEND_AT - timedelta(minutes=6)).astimezone(tokyo)) is None
    assert _cancel_at((SEND_AT - timedelta(minutes=4)).astimezone(tokyo)) is not None


def test_the_cut_off_is_not_checked_without_the_times() -> None:
    assert check_action(A.CANCEL, S.SCHEDULED, DEFAULT) is None
    assert check_action(A.CANCEL, S.SCHEDULED, DEFAULT, now=SEND_AT) is None
    assert check_action(A.CANCEL, S.SCHEDULED, DEFAULT, send_at=SEND_AT) is None


@pytest.mark.parametrize("status", [S.QUEUED, S.SENDING, S.PAUSED])
def test_the_cut_off_does_not_apply_once_the_campaign_runs(status: CampaignStatus) -> None:
    late = SEND_AT + timedelta(minutes=1)
    assert check_action(A.CANCEL, status, DEFAULT, now=late, send_at=SEND_AT) is None


def test_allowed_actions_of_a_scheduled_campaign_drop_cancel_after_the_cut_off() -> None:
    late = SEND_AT - timedelta(minutes=1)
    actions = allowed_actions(S.SCHEDULED, DEFAULT, now=late, send_at=SEND_AT)
    assert A.CANCEL not in actions and A.RESCHEDULE in actions


# --- lock_when_sending ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.QUEUED, S.SENDING, S.PAUSED])
def test_cancel_is_allowed_while_running_by_default(status: CampaignStatus) -> None:
    assert check_action(A.CANCEL, status, DEFAULT) is None


@pytest.mark.parametrize("status", [S.QUEUED, S.SENDING, S.PAUSED])
def test_lock_when_sending_refuses_cancel_while_running(status: CampaignStatus) -> None:
    refusal = check_action(A.CANCEL, status, LOCKED)
    assert refusal is not None
    assert refusal.reason == (
        f"the campaign is {status.value} and its policy locks it once sending starts "
        "(lock_when_sending)"
    )


def test_lock_when_sending_still_allows_cancel_while_scheduled() -> None:
    assert check_action(A.CANCEL, S.SCHEDULED, LOCKED) is None


@pytest.mark.parametrize("action", [A.PAUSE, A.DUPLICATE, A.REPORT])
def test_lock_when_sending_locks_only_cancel(action: CampaignAction) -> None:
    assert check_action(action, S.SENDING, LOCKED) is None


def test_lock_when_sending_drops_cancel_from_the_allowed_actions() -> None:
    assert A.CANCEL not in allowed_actions(S.SENDING, LOCKED)


# --- status transitions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new"), [(c, n) for c in CampaignStatus for n in CampaignStatus]
)
def test_each_status_change_is_allowed_exactly_as_the_table_says(
    current: CampaignStatus, new: CampaignStatus
) -> None:
    assert can_transition(current, new) == (new in EXPECTED_TRANSITIONS[current])


@pytest.mark.parametrize("status", list(CampaignStatus))
def test_no_status_changes_to_itself(status: CampaignStatus) -> None:
    assert not can_transition(status, status)


@pytest.mark.parametrize("status", list(CampaignStatus))
def test_nothing_goes_back_to_draft(status: CampaignStatus) -> None:
    assert not can_transition(status, S.DRAFT)


def test_cancelled_is_final() -> None:
    assert not any(can_transition(S.CANCELLED, s) for s in CampaignStatus)


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED])
def test_a_finished_campaign_can_only_be_queued_again_for_retry(status: CampaignStatus) -> None:
    assert {s for s in CampaignStatus if can_transition(status, s)} == {S.QUEUED}


def test_a_scheduled_campaign_cannot_be_paused() -> None:
    assert not can_transition(S.SCHEDULED, S.PAUSED)
