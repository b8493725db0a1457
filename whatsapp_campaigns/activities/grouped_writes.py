"""Store writes of concurrent send activities, committed together (group commit).

Hundreds of sends run at once in a worker, and each makes two short writes: the claim before
calling WhatsApp, the accepted id after. One transaction and one thread hand-off each cost
more than the statement itself (bench/RESULTS.md: a fifth of the worker's time). Here every
write asked for while a transaction is under way waits for the next one, which commits all
of them: under load one transaction carries dozens of writes; each group waits GATHER_SECONDS
(40 ms) for others to join it before it starts.

Each caller still gets its own answer only after its write is committed, so the guarantees
do not change: a message is claimed in the store before WhatsApp is called, and its
WhatsApp id is stored before the activity reports success. If one write of a group raises,
the group is rolled back and each write is run again in a transaction of its own, so that
the error reaches its caller alone. A group first hands the message ids its callers give
(`order`) to `lock`, which locks those messages in id order, the order in which the webhook
applier locks messages too (store/status_updates.py), so neither two groups nor a group and
an applier batch wait for each other in a cycle; were a group chosen as a deadlock's victim
anyway, it is run again write by write.

Writes of one kind are best made in one statement for the whole group: a `Batched` write
names a function of the connection and a list of items, called once per group with the items
of every caller that asked for it (in `order`), which answers each item in turn. A statement
costs the worker several times what a row costs (bench/RESULTS.md, "One statement per
group"): the claims and the accepted ids are batched.

A write may return a `Then`: a second step run in the same transaction once every write of
the group has run, the second steps in the order of their keys. The send path's per-second
admission (store/send_slots.py) is such a step: every group then locks the rows of several
numbers' seconds in one order, so two worker processes' groups cannot deadlock on them.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast, overload

from sqlalchemy import Connection

from whatsapp_campaigns.store.db import Database

_T = TypeVar("_T")
_Item = TypeVar("_Item")
# Writes per transaction at most: the SQLite write turn is not held for long.
MAX_GROUP = 200
# How long a group waits for writes to join it before its transaction starts. Sends arrive one
# by one, so without it a transaction often started with a single write, and a transaction
# (with its thread hand-off) costs several times the statements it carries (bench/RESULTS.md,
# "Send path, round 3"). And a campaign's sends answered together complete together, so that
# many completions ride on one of its workflow tasks: with 10 ms, once a group's statements
# were batched, its commits came so fast that a refill's completions spread over twice as many
# workflow tasks, each costing the Temporal server more than the worker saved (bench/RESULTS.md,
# "One statement per group"). 40 ms on a send that waits for WhatsApp anyway.
GATHER_SECONDS = 0.04


@dataclass(frozen=True)
class Batched(Generic[_Item]):
    """A write made together with the group's other writes of the same `function`: it is
    called once per group, `function(connection, items)`, and returns one answer per item,
    in order (each may be a `Then`); if it raises, each item is run again alone."""

    function: Callable[[Connection, list[_Item]], list[Any]]
    item: _Item


_Write = Callable[[Connection], Any] | Batched[Any]
_Lock = Callable[[Connection, list[int]], None]


@dataclass(frozen=True)
class Then:
    """Returned by a write: run `step` after the group's writes, in the order of `key`; the
    caller gets what `step` returns."""

    key: str
    step: Callable[[Connection], Any]


class GroupedWrites:
    def __init__(
        self,
        db: Database,
        *,
        lock: _Lock | None = None,
        max_group: int = MAX_GROUP,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        """`lock(connection, orders)`: called first in each transaction with the `order` of
        each of its writes, sorted."""
        self._db = db
        self._lock = lock
        self._max_group = max_group
        self._gather_seconds = gather_seconds
        self._waiting: list[tuple[int, _Write, asyncio.Future[Any]]] = []
        self._committing = False
        # The committing task, held: the loop keeps only a weak reference to it.
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # committed so far (for tests and benchmarks)

    @overload
    async def run(self, write: Callable[[Connection], _T], *, order: int = 0) -> _T: ...
    @overload
    async def run(self, write: Batched[Any], *, order: int = 0) -> Any: ...
    async def run(self, write: _Write, *, order: int = 0) -> Any:
        """Run `write` in a transaction shared with the writes asked for meanwhile; return its
        result once that transaction committed (or raise its error). `order`: the id of the
        message it writes (a group locks its messages, and runs its writes, in id order)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((order, write, future))
        if not self._committing:
            self._committing = True
            self._task = asyncio.get_running_loop().create_task(self._commit_waiting())
        # Shielded: a cancelled caller must not cancel a write that others share; its write
        # is committed anyway (as a write handed to a thread would be).
        return await asyncio.shield(future)

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                try:
                    await asyncio.sleep(self._gather_seconds)
                except asyncio.CancelledError:  # the loop is closing: so are the callers
                    self._cancel_waiting([])
                    raise
                group = sorted(self._waiting[: self._max_group], key=lambda w: w[0])
                del self._waiting[: self._max_group]
                try:
                    outcomes = await asyncio.to_thread(
                        self._commit, [order for order, _, _ in group], [w for _, w, _ in group]
                    )
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

    def _commit(self, orders: list[int], writes: list[_Write]) -> list[tuple[bool, Any]]:
        try:
            with self._db.transaction() as connection:
                if self._lock is not None:
                    self._lock(connection, orders)
                results = _run_writes(connection, writes)
                then = [i for i, value in enumerate(results) if isinstance(value, Then)]
                for i in sorted(then, key=lambda i: results[i].key):
                    results[i] = results[i].step(connection)
        except Exception as error:
            if len(writes) == 1:
                return [(False, error)]
            return [self._alone(order, write) for order, write in zip(orders, writes, strict=True)]
        self.transactions += 1
        return [(True, result) for result in results]

    def _alone(self, order: int, write: _Write) -> tuple[bool, Any]:
        outcome = self._commit([order], [write])
        return outcome[0]


def _run_writes(connection: Connection, writes: list[_Write]) -> list[Any]:
    """Each write's result, in order; a batched write's function is called at its first
    item, with all of its items."""
    results: list[Any] = [None] * len(writes)
    batches: dict[Callable[[Connection, list[Any]], list[Any]], list[int]] = {}
    for i, write in enumerate(writes):
        if isinstance(write, Batched):
            batches.setdefault(write.function, []).append(i)
    for i, write in enumerate(writes):
        if not isinstance(write, Batched):
            results[i] = write(connection)
            continue
        positions = batches.pop(write.function, None)
        if positions is None:  # answered with the batch's first item
            continue
        items = [cast(Batched[Any], writes[j]).item for j in positions]
        for j, answer in zip(positions, write.function(connection, items), strict=True):
            results[j] = answer
    return results
