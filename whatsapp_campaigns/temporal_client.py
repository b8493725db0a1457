"""Connecting to Temporal the way every part of the project does: pydantic payloads, and the
search attributes of SPEC §5 registered on the namespace."""

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from whatsapp_campaigns import tracing
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES


async def connect(
    settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None
) -> Client:
    """`lazy`: connect on the first call instead of now (the API builds its client this way).
    `runtime`: e.g. `metrics.make_runtime(...)`, to export the SDK's own metrics."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        lazy=lazy,
        runtime=runtime,
        interceptors=tracing.temporal_interceptors(),  # [] unless tracing is on
    )


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Add the campaign search attributes that the namespace lacks (idempotent).

    Without them every workflow task fails with "search attribute ... is not defined".
    """
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes)
    except RPCError as error:
        if error.status is not RPCStatusCode.UNIMPLEMENTED:  # the time-skipping test server
            raise
        known = set()
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
        for key in ALL_SEARCH_ATTRIBUTES
        if key.name not in known
    }
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as error:
            if error.status is not RPCStatusCode.ALREADY_EXISTS:
                raise
