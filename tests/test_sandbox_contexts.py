"""The worker reads each payload's serialization context straight from the sandboxed workflow
(workers/sandbox_contexts.py) instead of running code in its sandbox for it: a payload codec
still sees the contexts the SDK's own way gives, on a real dev server."""

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Self

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import _runner

from whatsapp_campaigns.workers import sandbox_contexts

ASKS = ("get_serialization_context", "get_external_store_context")


@activity.defn
async def echo(value: str) -> str:
    return value


@workflow.defn(sandboxed=True)
class EchoWorkflow:
    @workflow.run
    async def run(self, value: str) -> str:
        return await workflow.execute_activity(
            echo, value, start_to_close_timeout=timedelta(seconds=10)
        )


@dataclasses.dataclass(frozen=True)
class RecordingCodec(PayloadCodec, WithSerializationContext):
    """Passes payloads through, noting the context each was encoded or decoded in."""

    seen: list[tuple[str, SerializationContext | None]]
    context: SerializationContext | None = None

    def with_context(self, context: SerializationContext) -> Self:
        return dataclasses.replace(self, context=context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.seen.append(("encode", self.context))
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.seen.append(("decode", self.context))
        return list(payloads)


@dataclasses.dataclass
class Run:
    contexts: list[tuple[str, SerializationContext | None]]
    sandbox_code_runs: int  # code strings run in the workflow's sandbox


async def run_echo(dev_server: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> Run:
    """One EchoWorkflow with a recording codec, under a fixed workflow id and task queue (so
    that two runs' contexts compare)."""
    seen: list[tuple[str, SerializationContext | None]] = []
    runs = 0
    run_code = _runner._Instance._run_code

    def counted(instance: Any, code: str, **extra: Any) -> None:
        nonlocal runs
        runs += 1
        run_code(instance, code, **extra)

    monkeypatch.setattr(_runner._Instance, "_run_code", counted)
    converter = DataConverter(payload_codec=RecordingCodec(seen))
    client = Client(**(dev_server.client.config() | {"data_converter": converter}))
    async with Worker(
        client, task_queue="sandbox-contexts", workflows=[EchoWorkflow], activities=[echo]
    ):
        result = await client.execute_workflow(
            EchoWorkflow.run, "hello", id="sandbox-contexts-echo", task_queue="sandbox-contexts"
        )
    assert result == "hello"
    monkeypatch.setattr(_runner._Instance, "_run_code", run_code)
    return Run(contexts=seen, sandbox_code_runs=runs)


async def run_echo_both_ways(
    dev_server: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> tuple[Run, Run]:
    """The same workflow with the contexts read directly, then the SDK's own way."""
    assert sandbox_contexts.install()
    direct = await run_echo(dev_server, monkeypatch)
    for name in ASKS:
        monkeypatch.setattr(_runner._Instance, name, getattr(_runner._Instance, name).__wrapped__)
    return direct, await run_echo(dev_server, monkeypatch)


async def test_a_payload_codec_sees_the_same_contexts_as_the_sdks_own_way_gives(
    dev_server: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct, sdk_way = await run_echo_both_ways(dev_server, monkeypatch)

    assert direct.contexts == sdk_way.contexts
    activity_input = ActivitySerializationContext(
        namespace=dev_server.client.namespace,
        activity_id="1",
        activity_type="echo",
        activity_task_queue="sandbox-contexts",
        workflow_id="sandbox-contexts-echo",
        workflow_type="EchoWorkflow",
        is_local=False,
    )
    assert ("encode", activity_input) in direct.contexts


async def test_contexts_are_read_without_running_code_in_the_sandbox(
    dev_server: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct, sdk_way = await run_echo_both_ways(dev_server, monkeypatch)

    # The SDK's way runs code for each activation and for each context; the direct way only
    # for the activations (here: start, activity result, and the workflow's eviction).
    assert direct.sandbox_code_runs < sdk_way.sandbox_code_runs / 2


def test_installing_twice_keeps_one_shortcut() -> None:
    assert sandbox_contexts.install() and sandbox_contexts.install()
    for name in ASKS:
        shortcut = getattr(_runner._Instance, name)
        assert not hasattr(shortcut.__wrapped__, "__wrapped__")


def test_an_sdk_without_the_expected_sandbox_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(_runner, "_Instance")
    assert sandbox_contexts.install() is False
