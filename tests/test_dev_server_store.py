"""The dev stack's Temporal server keeps its state in a SQLite file in WAL mode
(whatsapp_campaigns.processes.TEMPORAL_SQLITE_PRAGMAS), and a killed server loses nothing it
had accepted."""

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from whatsapp_campaigns.devstack import temporal_binary
from whatsapp_campaigns.processes import (
    ChildProcess,
    free_port,
    port_ready,
    temporal_dev_server_command,
)

HOST = "127.0.0.1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ChildProcess, str, Path]]:
    """The dev stack's `temporal server start-dev` on a file in tmp_path: (process, address,
    file)."""
    port = free_port()
    db_file = tmp_path / "temporal.db"
    command = temporal_dev_server_command(
        temporal_binary(), HOST, port, db_file, "default", ui_port=None
    )
    process = ChildProcess(
        "temporal", command, dict(os.environ), tmp_path / "temporal.log", port_ready(HOST, port)
    )
    process.start()
    try:
        yield process, f"{HOST}:{port}", db_file
    finally:
        process.kill()


def test_the_dev_servers_sqlite_file_is_in_wal_mode(
    server: tuple[ChildProcess, str, Path],
) -> None:
    _, _, db_file = server
    with sqlite3.connect(db_file) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db_file.with_name("temporal.db-wal").exists()


async def test_a_workflow_the_server_accepted_is_there_after_the_server_is_killed(
    server: tuple[ChildProcess, str, Path],
) -> None:
    """synchronous=normal syncs the log at checkpoints only: what a process crash (SIGKILL,
    as the chaos runs do) cannot lose is every commit made before it."""
    process, address, _ = server
    client = await Client.connect(address)
    handle = await client.start_workflow(
        "NoWorkerServesThis", id="accepted-before-the-kill", task_queue="nobody"
    )
    process.restart(signal.SIGKILL)
    client = await Client.connect(address)
    description = await client.get_workflow_handle(handle.id).describe()
    assert description.run_id == handle.result_run_id
    assert description.status is WorkflowExecutionStatus.RUNNING
