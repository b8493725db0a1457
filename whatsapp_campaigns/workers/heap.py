"""The worker process's garbage collector, set for serving once the workers are built.

A worker's heap is mostly long-lived objects made at startup (the Temporal SDK, SQLAlchemy,
pydantic, the workflow sandbox: a few hundred thousand), and every message allocates many
short-lived ones. With CPython's defaults (a young collection every 700 net allocations, a
full one every hundred young ones or so) the full collections walked the whole startup heap,
about 190 ms each, and the collector took a sixth of the campaign worker's CPU at 16
campaigns (bench/RESULTS.md, "The worker's garbage collector, the curve, what the ratio can
reach"). Freezing what startup made takes it out of every later collection (`gc.freeze`); a
higher young threshold lets most per-message objects die by reference count before any
collection looks at them.

Only reference cycles wait for the collector, and a young collection still comes every
YOUNG_COLLECTION_EVERY container allocations: what a cycle holds is freed a little later, the
memory of a worker does not grow with the messages it sends.

Cycles that outlived the young collections wait for a full one, and those come after a hundred
young ones: 2 million net container allocations, which the short-lived objects of the sends
do not count towards. The largest such cycles are the ended workflow runs: the SDK's sandbox
imports the workflow modules afresh for each run (classes and functions that refer to each
other), and once the run continued as new or finished, its copy is garbage. Over 100,000
messages at 16 campaigns (about a hundred runs) none was freed; in a worker that serves for
days they would pile up to hundreds. So a full collection also comes every
FULL_COLLECTION_SECONDS (`collect_fully`), while the worker serves (`serving`).
"""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

# Net container allocations between young collections (CPython's default is 700). The older
# generations' thresholds stay CPython's (10, 10): counted in young collections, they come as
# many times less often.
YOUNG_COLLECTION_EVERY = 20_000
# How often a serving worker collects every generation: a few ended runs' copies at most
# between two, for one walk of the heap that is not frozen (0.1-0.3 s at 16 campaigns on a
# loaded box; no measurable CPU per message: bench/RESULTS.md, "A full garbage collection").
FULL_COLLECTION_SECONDS = 30.0


def settle_for_serving() -> int:
    """Collect once, freeze every object that survives (the startup heap) and raise the young
    threshold; returns how many objects are frozen. Call it once the workers are built, just
    before they poll."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)
    frozen = gc.get_freeze_count()
    log.info("heap settled for serving: %d startup objects frozen", frozen)
    return frozen


async def collect_fully(every: float = FULL_COLLECTION_SECONDS) -> None:
    """Collect every generation every `every` seconds, until cancelled."""
    while True:
        await asyncio.sleep(every)
        gc.collect()


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[None]:
    """The heap settled for serving (`settle_for_serving`), then collected fully every
    FULL_COLLECTION_SECONDS until the block ends. Enter it once the workers are built, just
    before they poll."""
    settle_for_serving()
    collecting = asyncio.create_task(collect_fully())
    try:
        yield
    finally:
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting
