"""Per-number, per-second send admission in the store (store/send_slots.py, SPEC §11): however
many workers ask at once, no second of the store's clock admits more than the number's rate;
sends waiting for a full second ask for the next ones in priority order."""

import math
import threading
import time

from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.send_slots import (
    AHEAD_SECONDS,
    KEEP_SECONDS,
    PRIORITY_PATIENCE_SECONDS,
    PriorityWaits,
    admitted_per_second,
    pass_slot,
    take_slot,
    take_slots,
)

NUMBER = "pn-slots-1"


def _take(db: Database, rate: int, number: str = NUMBER) -> bool:
    with db.transaction() as connection:
        return take_slot(connection, number, rate).won


def _admitted(db: Database, number: str = NUMBER) -> dict[int, int]:
    with db.transaction() as connection:
        return admitted_per_second(connection, number)


def _at_start_of_a_second() -> None:
    """Sleep to just after a second begins, so that a short test stays inside one second."""
    time.sleep(math.ceil(time.time()) - time.time() + 0.01)


def test_concurrent_claimers_in_other_processes_never_pass_the_rate_in_a_second(
    db_url: str,
) -> None:
    rate, claimers, tries = 7, 6, 40
    databases = [Database(db_url) for _ in range(claimers)]  # a connection pool each
    won: list[int] = []
    lock = threading.Lock()

    def claim(db: Database) -> None:
        mine = 0
        for _ in range(tries):
            mine += _take(db, rate)
            time.sleep(0.005)
        with lock:
            won.append(mine)

    threads = [threading.Thread(target=claim, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    per_second = _admitted(databases[0])
    for db in databases:
        db.dispose()

    assert max(per_second.values()) <= rate, per_second
    assert sum(per_second.values()) == sum(won)
    assert max(per_second.values()) == rate  # they did compete: some second was full


def _take_together(db: Database, rate: int, count: int) -> list[bool]:
    with db.transaction() as connection:
        return [slot.won for slot in take_slots(connection, NUMBER, rate, count)]


def test_sends_claimed_together_all_win_while_the_second_has_room_for_them(db: Database) -> None:
    _at_start_of_a_second()
    together = _take_together(db, 5, 4)
    assert (together, _take(db, 5), _take(db, 5)) == ([True] * 4, True, False)
    assert list(_admitted(db).values()) == [5]


def test_sends_claimed_together_beyond_the_room_left_win_in_order_until_it_is_full(
    db: Database,
) -> None:
    _at_start_of_a_second()
    _take(db, 5)
    _take(db, 5)
    together = _take_together(db, 5, 4)
    assert together == [True, True, True, False]
    assert list(_admitted(db).values()) == [5]


def test_more_sends_claimed_together_than_the_rate_fill_the_second_and_no_more(
    db: Database,
) -> None:
    _at_start_of_a_second()
    assert _take_together(db, 3, 5) == [True, True, True, False, False]
    assert list(_admitted(db).values()) == [3]


def test_a_full_second_refuses_and_the_next_second_admits_again(db: Database) -> None:
    _at_start_of_a_second()
    answers = [_take(db, 3) for _ in range(5)]
    _at_start_of_a_second()
    assert answers == [True, True, True, False, False]
    assert _take(db, 3)


def test_each_number_has_its_own_seconds(db: Database) -> None:
    _at_start_of_a_second()
    first = [_take(db, 2, "pn-a") for _ in range(3)]
    other = [_take(db, 2, "pn-b") for _ in range(2)]
    assert (first, other) == ([True, True, False], [True, True])


def test_a_slot_says_how_much_of_its_second_is_left(db: Database) -> None:
    _at_start_of_a_second()
    with db.transaction() as connection:
        slot = take_slot(connection, NUMBER, 10)
    now = time.time()
    assert (slot.second, 0.5 < slot.left <= 1) == (math.floor(now), True)
    assert abs(slot.second + 1 - slot.left - now) < 0.2  # the store's clock is this host's


def test_a_slot_asked_at_the_very_end_of_a_second_counts_in_the_next(db: Database) -> None:
    for _ in range(20):  # until an ask falls wholly inside a second's last AHEAD_SECONDS
        now = time.time()
        time.sleep((math.floor(now) + 2 - AHEAD_SECONDS / 2 - now) % 1)
        before = time.time()
        with db.transaction() as connection:
            slot = take_slot(connection, NUMBER, 10)
        after = time.time()
        if math.floor(before) == math.floor(after) and before % 1 >= 1 - AHEAD_SECONDS:
            break
    else:
        raise AssertionError("no ask fell inside the last part of a second (machine too busy)")
    assert (slot.won, slot.second) == (True, math.floor(before) + 1)
    assert 1 < slot.left <= 1 + AHEAD_SECONDS


def test_seconds_older_than_the_kept_window_are_pruned(db: Database) -> None:
    old = math.floor(time.time()) - KEEP_SECONDS - 5
    with db.transaction() as connection:
        connection.exec_driver_sql(
            "INSERT INTO send_slots (phone_number_id, second, used) "
            f"VALUES ('{NUMBER}', {old}, 3), ('other', {old}, 3)"
        )
    _at_start_of_a_second()
    _take(db, 10)
    seconds = _admitted(db)
    assert old not in seconds and len(seconds) == 1
    assert old in _admitted(db, "other")  # another number's rows are its own to prune


def test_a_send_that_lets_a_second_go_by_counts_nothing_in_it(db: Database) -> None:
    _at_start_of_a_second()
    with db.transaction() as connection:
        passed = pass_slot(connection)
    assert (passed.won, passed.second, 0.5 < passed.left <= 1) == (False, int(time.time()), True)
    assert _admitted(db) == {}
    assert [_take(db, 1), _take(db, 1)] == [True, False]  # the second's slot was still free


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


UTILITY, MARKETING = 1, 3  # Temporal priority keys (domain/models.py)


def test_a_waiting_marketing_send_yields_while_utility_sends_of_its_number_ask() -> None:
    clock = _Clock()
    waits = PriorityWaits(clock)
    waits.asked(NUMBER, UTILITY)
    clock.now += 0.9
    assert waits.yields(NUMBER, MARKETING, waited=1.0)
    assert not waits.yields(NUMBER, UTILITY, waited=1.0)  # never to its own priority


def test_a_waiting_send_asks_again_a_second_after_the_last_higher_priority_ask() -> None:
    clock = _Clock()
    waits = PriorityWaits(clock)
    waits.asked(NUMBER, UTILITY)
    clock.now += 1.01
    assert not waits.yields(NUMBER, MARKETING, waited=1.0)


def test_higher_priority_sends_of_another_number_hold_no_send_back() -> None:
    waits = PriorityWaits(_Clock())
    waits.asked("pn-other", UTILITY)
    assert not waits.yields(NUMBER, MARKETING, waited=1.0)


def test_a_send_without_a_priority_key_yields_as_temporals_default_priority_3() -> None:
    waits = PriorityWaits(_Clock())
    waits.asked(NUMBER, 2)
    assert waits.yields(NUMBER, None, waited=1.0)
    assert PriorityWaits.delay(None, waited=1.0) == PriorityWaits.delay(MARKETING, waited=1.0)


def test_a_send_that_has_waited_long_asks_at_once_whatever_its_priority() -> None:
    waits = PriorityWaits(_Clock())
    waits.asked(NUMBER, UTILITY)
    assert not waits.yields(NUMBER, MARKETING, waited=PRIORITY_PATIENCE_SECONDS)
    assert PriorityWaits.delay(MARKETING, waited=PRIORITY_PATIENCE_SECONDS) == 0.0


def test_at_a_seconds_start_waiting_sends_ask_in_priority_order() -> None:
    delays = [PriorityWaits.delay(key, waited=1.0) for key in (1, 2, 3, 4, 5)]
    assert delays == sorted(delays) and len(set(delays)) == 5
    assert delays[0] == 0.0  # the most urgent ask as soon as the second begins
    assert delays[-1] < 1 - AHEAD_SECONDS  # the least urgent still within the second
