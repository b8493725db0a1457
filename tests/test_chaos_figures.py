"""How the chaos suite counts: lost vs failed, messaged twice, not final, the fault a message
counts against, busiest second and recovery time (whatsapp_campaigns/chaos/figures.py)."""

from collections.abc import Mapping, Sequence

from whatsapp_campaigns.chaos.figures import Figures, PlayedFault, compute, recovery_seconds
from whatsapp_campaigns.chaos.stack import MessageOutcome

LAUNCH = 1_000.0
KILL = PlayedFault("worker-kill", "worker SIGKILL", LAUNCH + 10, LAUNCH + 12, "")


def figures(
    outcomes: Sequence[MessageOutcome],
    accepted: Mapping[str, int],
    repeated: Mapping[str, Sequence[float]] | None = None,
    per_second: Mapping[int, int] | None = None,
) -> Figures:
    return compute(
        recipients=len(outcomes),
        rate=10,
        launched=LAUNCH,
        finished=LAUNCH + 30,
        campaign_status="completed",
        played=[KILL],
        per_second=per_second or {},
        accepted_per_recipient=accepted,
        repeated=repeated or {},
        outcomes=outcomes,
        sandbox_faults={},
    )


def test_a_message_whatsapp_never_accepted_and_not_reported_failed_is_lost() -> None:
    result = figures([MessageOutcome("1", "read", LAUNCH + 11)], accepted={})
    assert (result.total.lost, result.rows[1].lost, result.promise_kept) == (1, 1, False)


def test_a_message_reported_failed_is_failed_not_lost() -> None:
    result = figures([MessageOutcome("1", "failed", LAUNCH + 5)], accepted={})
    assert (result.total.lost, result.total.failed, result.rows[0].failed) == (0, 1, 1)
    assert result.promise_kept


def test_a_message_still_sending_at_the_end_is_not_final() -> None:
    result = figures([MessageOutcome("1", "sending", LAUNCH + 11)], accepted={"1": 1})
    assert (result.total.not_final, result.rows[1].not_final) == (1, 1)
    assert not result.promise_kept


def test_a_recipient_messaged_twice_counts_against_the_fault_of_the_first_send() -> None:
    result = figures(
        [MessageOutcome("1", "read", LAUNCH + 20)],
        accepted={"1": 2},
        repeated={"1": [LAUNCH + 11, LAUNCH + 25]},
    )
    assert (result.rows[0].twice, result.rows[1].twice, result.total.twice) == (0, 1, 1)
    assert not result.promise_kept


def test_the_busiest_second_is_counted_per_fault() -> None:
    second = int(LAUNCH)
    result = figures(
        [MessageOutcome("1", "read", LAUNCH)],
        accepted={"1": 1},
        per_second={second + 1: 9, second + 11: 14},
    )
    assert [row.busiest_second for row in result.rows] == [9, 14]
    assert result.total.busiest_second == 14


def test_recovery_is_when_sends_flow_again_at_half_the_earlier_pace() -> None:
    before = {s: 10 for s in range(90, 100)}  # 10/s before the fault at 100
    after = {100: 0, 101: 0, 102: 0, 103: 6, 104: 6, 105: 6}
    assert recovery_seconds(before | after, 100.0) == 3.0


def test_recovery_is_none_when_sends_never_came_back() -> None:
    before = {s: 10 for s in range(90, 100)}
    assert recovery_seconds(before | {100: 0, 101: 1}, 100.0) is None
