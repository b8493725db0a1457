"""The worker process sets its garbage collector for serving (workers/heap.py): what startup
made is frozen, young collections come less often, reference cycles are still freed, and a
full collection comes on a timer.

The settings' checks run in a process of their own: the collector's settings are the whole
process's.
"""

import asyncio
import contextlib
import gc
import subprocess
import sys
import time
import uuid
import weakref
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import wait_until
from tests.servers import start_worker
from whatsapp_campaigns.workers import heap


def run_python(script: str) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return [int(word) for word in done.stdout.split()]


def test_settling_freezes_what_the_worker_imported_and_raises_the_young_threshold() -> None:
    frozen, freeze_count, young, middle, old, middle_before, old_before = run_python(
        "import gc\n"
        "from whatsapp_campaigns.workers import heap, main\n"
        "_, middle, old = gc.get_threshold()\n"
        "frozen = heap.settle_for_serving()\n"
        "print(frozen, gc.get_freeze_count(), *gc.get_threshold(), middle, old)\n"
    )
    assert frozen == freeze_count > 50_000  # the SDK, SQLAlchemy, pydantic, the project
    assert young == heap.YOUNG_COLLECTION_EVERY
    assert (middle, old) == (middle_before, old_before)  # the older generations': CPython's


def test_reference_cycles_made_after_settling_are_still_freed() -> None:
    (freed,) = run_python(
        "from whatsapp_campaigns.workers import heap\n"
        "heap.settle_for_serving()\n"
        "freed = 0\n"
        "class Node:\n"
        "    def __init__(self):\n"
        "        self.me = self  # a cycle: only the collector frees it\n"
        "    def __del__(self):\n"
        "        global freed\n"
        "        freed += 1\n"
        "for _ in range(200_000):\n"
        "    Node()\n"
        "print(freed)\n"
    )
    # Without a collection none would be; a young one comes every YOUNG_COLLECTION_EVERY.
    assert freed >= 200_000 - 2 * heap.YOUNG_COLLECTION_EVERY


class _EndedRun:
    """Stands for an ended workflow run's sandbox: objects that refer to each other."""

    def __init__(self) -> None:
        self.me = self


async def test_a_cycle_in_the_oldest_generation_is_freed_by_the_timed_full_collection() -> None:
    run = _EndedRun()
    gc.collect()  # it survives every generation's collection: it is in the oldest one now
    ended = weakref.ref(run)
    del run
    gc.disable()  # only the timed collection may free it
    collecting = asyncio.create_task(heap.collect_fully(every=0.05))
    try:
        await wait_until(lambda: ended() is None, timeout=1.0)
    finally:
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting
        gc.enable()
    assert ended() is None, "an ended run's cycle was still in memory after 1 s"


@pytest.mark.e2e
def test_the_worker_process_settles_its_heap_before_it_polls(
    dev_server: WorkflowEnvironment, db_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    environment = {
        "CAMPAIGNS_DATABASE_URL": db_url,
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "CAMPAIGNS_TASK_QUEUE": f"campaigns-heap-{uuid.uuid4().hex[:8]}",
    }
    worker = start_worker(environment, log)
    try:
        deadline = time.monotonic() + 60
        while "worker polling" not in log.read_text() and worker.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(30)
    lines = log.read_text().splitlines()
    settled = [i for i, line in enumerate(lines) if "heap settled for serving" in line]
    polling = [i for i, line in enumerate(lines) if "worker polling" in line]
    assert settled and polling and settled[0] < polling[0], "\n".join(lines)
