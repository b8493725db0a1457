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
"""

import gc
import logging

log = logging.getLogger(__name__)

# Net container allocations between young collections (CPython's default is 700). The older
# generations' thresholds stay CPython's (10, 10): counted in young collections, they come as
# many times less often.
YOUNG_COLLECTION_EVERY = 20_000


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
