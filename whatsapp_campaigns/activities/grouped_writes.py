"""Store writes of concurrent send activities, committed together (group commit).

Hundreds of sends run at once in a worker, and each makes short writes: the claim before
calling WhatsApp, the accepted id after. One transaction and one thread hand-off each cost
more than the statement itself (bench/RESULTS.md: a fifth of the worker's time). Here every
write asked for while a transaction is under way waits for the next one, which commits all
of them: under load one transaction carries dozens of writes; the first write after a quiet
spell waits GATHER_SECONDS (25 ms) for others to join it. `apply` writes a group as a whole
(store/attempts.py `write_send_group`: set-based, a few statements for any number of writes).

Each caller still gets its own answer only after its write is committed, so the guarantees
do not change: a message is claimed in the store before WhatsApp is called, and its
WhatsApp id is stored before the activity reports success. `apply` answers a write that
cannot be done (a message that does not exist) with its error, raised to its caller alone,
and the others are committed. If the group itself raises (a deadlock's victim, say), it is
rolled back and each write is run again in a transaction of its own, so that an error reaches
its caller alone.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy import Connection

from whatsapp_campaigns.store.db import Database

_W = TypeVar("_W")
_A = TypeVar("_A")
# Writes per transaction at most: the SQLite write turn is not held for long.
MAX_GROUP = 200
# How long the first write after a quiet spell waits for others to join its transaction. Sends
# arrive one by one (a write every few milliseconds at 150-200 msg/s), and a group costs the
# same few statements whatever its size (store/attempts.py), so a longer gather makes fewer,
# larger groups: at 25 ms against 10 ms, PostgreSQL's CPU per message fell by a seventh with
# sixteen campaigns, and a send's two writes wait 50 ms more, well inside its window
# (bench/RESULTS.md, "Set-based send groups").
GATHER_SECONDS = 0.025

# Writes a group in the caller's transaction: one answer per write, in their order; an
# Exception answers a write that failed alone.
Apply = Callable[[Connection, Sequence[_W]], Sequence[_A | Exception]]


class GroupedWrites(Generic[_W, _A]):
    def __init__(
        self,
        db: Database,
        apply: Apply[_W, _A],
        *,
        max_group: int = MAX_GROUP,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self._db = db
        self._apply = apply
        self._max_group = max_group
        self._gather_seconds = gather_seconds
        self._waiting: list[tuple[_W, asyncio.Future[_A]]] = []
        self._committing = False
        # The committing task, held: the loop keeps only a weak reference to it.
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # committed so far (for tests and benchmarks)

    async def run(self, write: _W) -> _A:
        """Write `write` in a transaction shared with the writes asked for meanwhile; return its
        answer once that transaction committed (or raise its error)."""
        future: asyncio.Future[_A] = asyncio.get_running_loop().create_future()
        self._waiting.append((write, future))
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
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                try:
                    answers = await asyncio.to_thread(self._commit, [w for w, _ in group])
                except asyncio.CancelledError:
                    self._cancel_waiting(group)
                    raise
                except Exception as error:  # the thread pool is gone (shutdown), say
                    answers = [error] * len(group)
                for (_, future), answer in zip(group, answers, strict=True):
                    if future.done():
                        continue
                    if isinstance(answer, Exception):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self._committing = False

    def _cancel_waiting(self, group: list[tuple[_W, "asyncio.Future[_A]"]]) -> None:
        for _, future in group + self._waiting:
            future.cancel()
        self._waiting.clear()

    def _commit(self, writes: list[_W]) -> Sequence[_A | Exception]:
        try:
            with self._db.transaction() as connection:
                answers = self._apply(connection, writes)
        except Exception as error:
            if len(writes) == 1:
                return [error]
            return [self._alone(write) for write in writes]
        self.transactions += 1
        return answers

    def _alone(self, write: _W) -> _A | Exception:
        try:
            with self._db.transaction() as connection:
                (answer,) = self._apply(connection, [write])
        except Exception as error:
            return error
        self.transactions += 1
        return answer
