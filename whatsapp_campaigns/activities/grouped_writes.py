"""Store writes of concurrent send activities, committed together (group commit).

Hundreds of sends run at once in a worker, and each makes two short writes: the claim before
calling WhatsApp, the accepted id after. One transaction and one thread hand-off each cost
more than the statement itself (bench/RESULTS.md: a fifth of the worker's time). Here every
write asked for while a transaction is under way waits for the next one, which commits all
of them: under load one transaction carries dozens of writes; the first write after a quiet
spell waits GATHER_SECONDS (10 ms) for others to join it.

Each caller still gets its own answer only after its write is committed, so the guarantees
do not change: a message is claimed in the store before WhatsApp is called, and its
WhatsApp id is stored before the activity reports success. If one write of a group raises,
the group is rolled back and each write is run again in a transaction of its own, so that
the error reaches its caller alone. The writes of a group run in the order of the message
ids their callers give (`order`), the order in which the webhook applier locks messages too
(store/status_updates.py), so neither two groups nor a group and an applier batch wait for
each other in a cycle; were a group chosen as a deadlock's victim anyway, it is run again
write by write.

A write may return a `Then`: a second step run in the same transaction once every write of
the group has run, the second steps in the order of their keys. The send path's per-second
admission (store/send_slots.py) is such a step: every group then locks the rows of several
numbers' seconds in one order, so two worker processes' groups cannot deadlock on them.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection

from whatsapp_campaigns.store.db import Database

_T = TypeVar("_T")
# Writes per transaction at most: the SQLite write turn is not held for long.
MAX_GROUP = 200
# How long the first write after a quiet spell waits for others to join its transaction. Sends
# arrive one by one (a write every few milliseconds at 150-200 msg/s), so without it a
# transaction often started with a single write, and a transaction (with its thread hand-off)
# costs several times the statements it carries (bench/RESULTS.md, "Send path, round 3").
GATHER_SECONDS = 0.01

_Write = Callable[[Connection], Any]


@dataclass(frozen=True)
class Then:
    """Returned by a write: run `step` after the group's writes, in the order of `key`; the
    caller gets what `step` returns."""

    key: str
    step: Callable[[Connection], Any]


class GroupedWrites:
    def __init__(
        self, db: Database, *, max_group: int = MAX_GROUP, gather_seconds: float = GATHER_SECONDS
    ) -> None:
        self._db = db
        self._max_group = max_group
        self._gather_seconds = gather_seconds
        self._waiting: list[tuple[int, _Write, asyncio.Future[Any]]] = []
        self._committing = False
        # The committing task, held: the loop keeps only a weak reference to it.
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # committed so far (for tests and benchmarks)

    async def run(self, write: Callable[[Connection], _T], *, order: int = 0) -> _T:
        """Run `write` in a transaction shared with the writes asked for meanwhile; return its
        result once that transaction committed (or raise its error). `order`: the id of the
        message it writes (a group writes its messages in id order)."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._waiting.append((order, write, future))
        if not self._committing:
            self._committing = True
            self._task = asyncio.get_running_loop().create_task(self._commit_waiting())
        # Shielded: a cancelled caller must not cancel a write that others share; its write
        # is committed anyway (as a write handed to a thread would be).
        return await asyncio.shield(future)

    async def _commit_waiting(self) -> None:
        try:
            try:
                # (writes asked for while a transaction runs join the next one without waiting)
                await asyncio.sleep(self._gather_seconds)
            except asyncio.CancelledError:  # the loop is closing: so are the callers
                self._cancel_waiting([])
                raise
            while self._waiting:
                group = sorted(self._waiting[: self._max_group], key=lambda w: w[0])
                del self._waiting[: self._max_group]
                try:
                    outcomes = await asyncio.to_thread(self._commit, [w for _, w, _ in group])
                except asyncio.CancelledError:
                    self._cancel_waiting(group)
                    raise
                except Exception as error:  # the thread pool is gone (shutdown), say
                    outcomes = [(False, error)] * len(group)
                for (_, _, future), (ok, value) in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._committing = False

    def _cancel_waiting(self, group: list[tuple[int, _Write, "asyncio.Future[Any]"]]) -> None:
        for _, _, future in group + self._waiting:
            future.cancel()
        self._waiting.clear()

    def _commit(self, writes: list[_Write]) -> list[tuple[bool, Any]]:
        try:
            with self._db.transaction() as connection:
                results = [(True, write(connection)) for write in writes]
                then = [i for i, (_, value) in enumerate(results) if isinstance(value, Then)]
                for i in sorted(then, key=lambda i: results[i][1].key):
                    results[i] = (True, results[i][1].step(connection))
        except Exception as error:
            if len(writes) == 1:
                return [(False, error)]
            return [self._alone(write) for write in writes]
        self.transactions += 1
        return results

    def _alone(self, write: _Write) -> tuple[bool, Any]:
        try:
            with self._db.transaction() as connection:
                result = write(connection)
                if isinstance(result, Then):
                    result = result.step(connection)
        except Exception as error:
            return False, error
        self.transactions += 1
        return True, result
