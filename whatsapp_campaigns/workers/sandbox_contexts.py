"""Serialization contexts of sandboxed workflows, read without running code in the sandbox.

temporalio (1.35) asks a workflow for the serialization context of every payload of every
activation it decodes and every completion it encodes (so that a payload codec may depend on
the command a payload belongs to), three to four times per payload. For a sandboxed workflow
each ask compiles and runs a code string inside the sandbox (`_Instance._run_code`: `exec`, the
sandbox's importer swapped in and out): seven times per message sent here, about a fifth of
the worker's CPU per message (bench/RESULTS.md, "Sixteen campaigns, round 4"). The answer
comes from the workflow instance's own method, which reads the workflow's pending commands and
imports nothing, so calling that method directly gives the same context.

`install()` replaces the two asks on the SDK's sandbox instance class with direct calls, if
the SDK still has the shape this was written for; otherwise it leaves the SDK alone and says
so in the log. Each call falls back to the SDK's own way for an instance without the expected
state.
"""

import logging
from collections.abc import Callable
from typing import Any

from temporalio.worker.workflow_sandbox import _runner

log = logging.getLogger(__name__)

# The sandbox instance's methods that run code in the sandbox only to call the same-named
# method of the instance inside it, which the sandbox keeps under this global.
_ASKS = ("get_serialization_context", "get_external_store_context")
_IN_SANDBOX = "__temporal_in_sandbox"
_INSTALLED = "_whatsapp_campaigns_direct"


def install() -> bool:
    """Read the contexts directly from now on (idempotent); False if the SDK is not shaped as
    expected (nothing changed)."""
    instance_class: Any = getattr(_runner, "_Instance", None)
    if instance_class is None or not all(callable(getattr(instance_class, n, None)) for n in _ASKS):
        log.warning(
            "temporalio's sandbox has changed shape: serialization contexts are read the SDK's "
            "own (slower) way"
        )
        return False
    for name in _ASKS:
        sdk_way = getattr(instance_class, name)
        if not getattr(sdk_way, _INSTALLED, False):
            setattr(instance_class, name, _direct(name, sdk_way))
    return True


def _direct(name: str, sdk_way: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def ask(instance: Any, command_info: Any) -> Any:
        state = getattr(instance, "globals_and_locals", None)
        in_sandbox = state.get(_IN_SANDBOX) if isinstance(state, dict) else None
        if in_sandbox is None:
            return sdk_way(instance, command_info)
        return getattr(in_sandbox, name)(command_info)

    setattr(ask, _INSTALLED, True)
    ask.__name__ = name
    ask.__wrapped__ = sdk_way  # type: ignore[attr-defined]
    return ask
