"""Durable, batched webhook ingest: the receiver stores, a background task applies.

`receive` returns once the payload is committed to the inbox: payloads arriving while a
commit runs wait for the next one, so a burst of POSTs costs one INSERT and one commit per
batch (group commit), not one per request. The applier task claims the oldest payloads in
batches, applies them through `webhook_appliers` (set-based) and deletes them, in one
transaction; it wakes when a commit lands, and polls the store every `poll_seconds` for
payloads it was not told about (another replica's, or this one's before a restart). Backlog
and lag go to Prometheus and `/healthz`.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from whatsapp_campaigns import metrics
from whatsapp_campaigns.api.webhook_appliers import apply_payloads
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import webhook_inbox
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import utcnow
from whatsapp_campaigns.store.webhook_inbox import Backlog, InboxItem

log = logging.getLogger(__name__)

BATCH_SIZE = 2_000  # payloads applied per transaction
MAX_GROUP_COMMIT = 1_000  # payloads stored per commit
WRITERS = 4  # commits in flight at once (SQLite serializes them anyway)
POLL_SECONDS = 1.0
# After a wake-up, let a few more commits land so that a batch is worth its statements.
COALESCE_SECONDS = 0.25
RETRY_SECONDS = 2.0  # after a store error
BACKLOG_REFRESH_SECONDS = 1.0
CLOSE_SETTLE_SECONDS = 5.0


class _Unapplicable(Exception):
    def __init__(self, item: InboxItem, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.item = item


class WebhookIngest:
    """One per API process. `start()` on the running loop (the app's lifespan does it; the
    first `receive` does it when the server runs no lifespan); `close()` at shutdown."""

    def __init__(self, db: Database, settings: Settings, *, batch_size: int = BATCH_SIZE) -> None:
        self._db = db
        self._settings = settings
        self._batch_size = batch_size
        self._pending: list[tuple[bytes, datetime, asyncio.Future[None]]] = []
        self._has_pending = asyncio.Event()
        self._committed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._backlog_read_at = 0.0

    # ---------------------------------------------------------------- receiving

    async def receive(self, body: bytes) -> None:
        """Store one payload; returns when it is committed (raises the store's error if not)."""
        self.start()
        done = asyncio.get_running_loop().create_future()
        self._pending.append((body, datetime.now(UTC), done))
        self._has_pending.set()
        await done

    async def _write_loop(self) -> None:
        """Take whatever waits and commit it; up to WRITERS commits run at once, so a request
        arriving during a commit does not wait for it to end before its own starts."""
        slots = asyncio.Semaphore(WRITERS)
        flushes: set[asyncio.Task[None]] = set()
        while True:
            await self._has_pending.wait()
            self._has_pending.clear()
            while self._pending:
                await slots.acquire()
                batch = self._pending[:MAX_GROUP_COMMIT]
                del self._pending[:MAX_GROUP_COMMIT]
                flush = asyncio.create_task(self._flush(batch))
                flushes.add(flush)
                flush.add_done_callback(flushes.discard)
                flush.add_done_callback(lambda _: slots.release())

    async def _flush(self, batch: list[tuple[bytes, datetime, asyncio.Future[None]]]) -> None:
        try:
            await run_in_threadpool(
                webhook_inbox.append, self._db, [(body, at) for body, at, _ in batch]
            )
        except Exception as error:  # every waiting request answers 503
            log.warning("%d webhooks not stored: %s", len(batch), error)
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for _, _, done in batch:
            if not done.done():
                done.set_result(None)
        self._committed.set()

    # ---------------------------------------------------------------- applying

    async def _apply_loop(self) -> None:
        while True:
            try:
                applied = await run_in_threadpool(self.apply_batch)
                await self.refresh_backlog(force=applied == 0)
            except SQLAlchemyError as error:
                log.warning("webhooks not applied (store error), retrying: %s", error)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if applied >= self._batch_size:
                continue
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the cancel of close().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._committed.wait()
            self._committed.clear()
            await asyncio.sleep(COALESCE_SECONDS)

    def apply_batch(self) -> int:
        """Apply the oldest waiting payloads (blocking); how many. A batch that fails for any
        reason but a store error is applied again one payload at a time, and a payload that
        fails on its own is set aside (kept, counted in /healthz) instead of blocking the rest."""
        try:
            return self._apply_claimed(self._batch_size)
        except _Unapplicable:
            pass
        applied = 0
        for _ in range(self._batch_size):
            try:
                count = self._apply_claimed(1)
            except _Unapplicable as failed:
                log.error("webhook %d set aside, not applicable: %s", failed.item.id, failed)
                webhook_inbox.set_aside(self._db, failed.item.id, str(failed))
                continue
            if count == 0:
                break
            applied += count
        return applied

    def _apply_claimed(self, limit: int) -> int:
        with self._db.session() as session:
            items = webhook_inbox.claim(session, limit)
            if not items:
                return 0
            try:
                apply_payloads(session, self._settings, _decoded(items))
            except SQLAlchemyError:
                raise
            except Exception as error:
                raise _Unapplicable(items[0], error) from error
            webhook_inbox.remove(session, [item.id for item in items])
        now = utcnow()
        metrics.record_webhook_applied((now - item.received_at).total_seconds() for item in items)
        return len(items)

    async def refresh_backlog(self, *, force: bool = True) -> Backlog | None:
        loop_time = asyncio.get_running_loop().time()
        if not force and loop_time - self._backlog_read_at < BACKLOG_REFRESH_SECONDS:
            return None
        self._backlog_read_at = loop_time
        backlog = await run_in_threadpool(webhook_inbox.backlog, self._db)
        metrics.set_webhook_backlog(backlog.waiting, backlog.oldest_seconds, backlog.dead_letters)
        return backlog

    async def settle(self) -> None:
        """Return once nothing waits: what this process received, and earlier payloads."""
        while True:
            if not self._pending:
                await run_in_threadpool(self.apply_batch)
                backlog = await self.refresh_backlog(force=True)
                if backlog is not None and backlog.waiting == 0:
                    return
            await asyncio.sleep(0.01)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="webhook inbox writer"),
            asyncio.create_task(self._apply_loop(), name="webhook applier"),
        ]

    async def close(self) -> None:
        """Stop after storing what was received (its requests are answered) and applying what
        waits, for at most CLOSE_SETTLE_SECONDS; what still waits is applied by the next start."""
        if not self._tasks:
            return
        try:
            async with asyncio.timeout(CLOSE_SETTLE_SECONDS):
                await self.settle()
        except TimeoutError:
            log.warning("webhooks still waiting at shutdown: applied at the next start")
        except SQLAlchemyError as error:
            log.warning("webhooks not applied at shutdown (%s): applied at the next start", error)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


def backlog_report(backlog: Backlog) -> dict[str, Any]:
    report = asdict(backlog)
    report["oldest_seconds"] = round(backlog.oldest_seconds, 3)
    return report


def _decoded(items: Sequence[InboxItem]) -> list[tuple[Any, datetime]]:
    """Bodies were checked to be JSON objects on receipt; a body that somehow is not one is
    logged and skipped (it can never become applicable)."""
    decoded: list[tuple[Any, datetime]] = []
    for item in items:
        try:
            decoded.append((json.loads(item.body), item.received_at))
        except ValueError:
            log.error("webhook %d in the inbox is not JSON: dropped", item.id)
    return decoded
