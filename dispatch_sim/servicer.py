"""gRPC servicer implementing the six MicrogridDispatchService RPCs."""

import asyncio
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass
import logging
from typing import Any

from frequenz.api.common.v1alpha8.pagination.pagination_info_pb2 import (
    PaginationInfo,
)
from frequenz.api.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
import grpc

from .auth import check_call
from .convert import now_utc, round_to_second, to_timestamp
from .mask import apply_update
from .paging import paginate
from .query import matches
from .store import DispatchNotFoundError, DispatchStore
from .streams import AbortStream, EndStream, StreamHub
from .validate import InvalidDispatchError, validate_data

_LOGGER = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class ServiceControls:
    """Settings and counters shared by the servicer and its owner."""

    api_key: str
    """Expected value of the `key` metadata."""

    sign_secret: str | None = None
    """When set, request signatures are verified."""

    page_size: int = 20
    """Default page size of ListMicrogridDispatches."""

    delay: float = 0.0
    """Seconds every unary RPC waits before answering."""

    list_calls: int = 0
    """Number of authenticated ListMicrogridDispatches calls."""

    stream_calls: int = 0
    """Number of authenticated StreamMicrogridDispatches calls."""


@contextlib.asynccontextmanager
async def _status_errors(context: Context, method: str) -> AsyncIterator[None]:
    """Turn domain errors into gRPC status codes.

    Args:
        context: The call context.
        method: The RPC name, for the log.

    Yields:
        Nothing; wraps the handler body.

    """
    try:
        yield
    except InvalidDispatchError as err:
        _LOGGER.info("%s -> INVALID_ARGUMENT: %s", method, err)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
    except DispatchNotFoundError as err:
        _LOGGER.info("%s -> NOT_FOUND: %s", method, err)
        await context.abort(grpc.StatusCode.NOT_FOUND, str(err))


class DispatchServicer(dispatch_pb2_grpc.MicrogridDispatchServiceServicer):
    """In-memory implementation of the Dispatch API."""

    def __init__(
        self, store: DispatchStore, hub: StreamHub, controls: ServiceControls
    ) -> None:
        """Create the servicer.

        Args:
            store: The dispatch storage.
            hub: The open-stream registry.
            controls: Settings and counters.

        """
        self._store = store
        self._hub = hub
        self._controls = controls

    async def _admit(self, context: Context, method: str, detail: str) -> None:
        """Log the call and check its credentials.

        Args:
            context: The call context.
            method: The RPC name.
            detail: Request summary for the log (must not contain secrets).

        """
        _LOGGER.info("%s(%s) from %s", method, detail, context.peer())
        reason = check_call(
            context,
            method,
            api_key=self._controls.api_key,
            sign_secret=self._controls.sign_secret,
        )
        if reason is not None:
            _LOGGER.info("%s -> UNAUTHENTICATED: %s", method, reason)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    async def _admit_unary(self, context: Context, method: str, detail: str) -> None:
        """Admit a unary call and apply the configured delay.

        Args:
            context: The call context.
            method: The RPC name.
            detail: Request summary for the log.

        """
        await self._admit(context, method, detail)
        if self._controls.delay > 0:
            await asyncio.sleep(self._controls.delay)

    async def ListMicrogridDispatches(
        self, request: dispatch_pb2.ListMicrogridDispatchesRequest, context: Context
    ) -> dispatch_pb2.ListMicrogridDispatchesResponse:
        """List dispatches, filtered, sorted and paginated.

        Args:
            request: The request.
            context: The call context.

        Returns:
            One page of dispatches.

        """
        await self._admit(context, "ListMicrogridDispatches", f"{request.microgrid_id}")
        self._controls.list_calls += 1
        if self._controls.delay > 0:
            await asyncio.sleep(self._controls.delay)
        async with _status_errors(context, "ListMicrogridDispatches"):
            found = [
                dispatch
                for dispatch in self._store.all(request.microgrid_id)
                if matches(dispatch, request.filter)
            ]
            page = paginate(found, request, self._controls.page_size)
        return dispatch_pb2.ListMicrogridDispatchesResponse(
            dispatches=page.dispatches,
            pagination_info=PaginationInfo(
                total_items=page.total_items,
                next_page_token=page.next_page_token or None,
            ),
        )

    async def StreamMicrogridDispatches(
        self, request: dispatch_pb2.StreamMicrogridDispatchesRequest, context: Context
    ) -> AsyncIterator[dispatch_pb2.StreamMicrogridDispatchesResponse]:
        """Stream change events of one microgrid until ended or aborted.

        Args:
            request: The request.
            context: The call context.

        Yields:
            One response per change.

        """
        method = "StreamMicrogridDispatches"
        await self._admit(context, method, f"{request.microgrid_id}")
        self._controls.stream_calls += 1
        subscription = self._hub.subscribe(request.microgrid_id)
        try:
            while True:
                item = await subscription.queue.get()
                if isinstance(item, EndStream):
                    _LOGGER.info("%s(%s) ended", method, request.microgrid_id)
                    return
                if isinstance(item, AbortStream):
                    _LOGGER.info("%s(%s) -> %s", method, request.microgrid_id, item)
                    await context.abort(item.code, item.details)
                yield item
        finally:
            self._hub.unsubscribe(subscription)

    async def CreateMicrogridDispatch(
        self, request: dispatch_pb2.CreateMicrogridDispatchRequest, context: Context
    ) -> dispatch_pb2.CreateMicrogridDispatchResponse:
        """Create a dispatch.

        Args:
            request: The request.
            context: The call context.

        Returns:
            The created dispatch.

        """
        detail = f"{request.microgrid_id}, type={request.dispatch_data.type!r}"
        await self._admit_unary(context, "CreateMicrogridDispatch", detail)
        async with _status_errors(context, "CreateMicrogridDispatch"):
            data = dispatch_pb2.DispatchData()
            data.CopyFrom(request.dispatch_data)
            now = now_utc()
            if request.start_immediately:
                # Whole seconds, but never in the future: it starts right away.
                data.start_time.CopyFrom(to_timestamp(now.replace(microsecond=0)))
            elif data.HasField("start_time"):
                round_to_second(data.start_time)
            validate_data(data, now=now)
            dispatch = self._store.create(request.microgrid_id, data)
        _LOGGER.info("CreateMicrogridDispatch -> id %s", dispatch.metadata.dispatch_id)
        return dispatch_pb2.CreateMicrogridDispatchResponse(dispatch=dispatch)

    async def UpdateMicrogridDispatch(
        self, request: dispatch_pb2.UpdateMicrogridDispatchRequest, context: Context
    ) -> dispatch_pb2.UpdateMicrogridDispatchResponse:
        """Update fields of a dispatch according to the field mask.

        Args:
            request: The request.
            context: The call context.

        Returns:
            The updated dispatch.

        """
        paths = ",".join(request.update_mask.paths)
        detail = f"{request.microgrid_id}, {request.dispatch_id}, [{paths}]"
        await self._admit_unary(context, "UpdateMicrogridDispatch", detail)
        async with _status_errors(context, "UpdateMicrogridDispatch"):
            current = self._store.get(request.microgrid_id, request.dispatch_id)
            data = apply_update(current.data, request)
            start_changed = "start_time" in request.update_mask.paths
            if start_changed:
                round_to_second(data.start_time)
            validate_data(data, now=now_utc() if start_changed else None)
            dispatch = self._store.replace_data(
                request.microgrid_id, request.dispatch_id, data
            )
        return dispatch_pb2.UpdateMicrogridDispatchResponse(dispatch=dispatch)

    async def GetMicrogridDispatch(
        self, request: dispatch_pb2.GetMicrogridDispatchRequest, context: Context
    ) -> dispatch_pb2.GetMicrogridDispatchResponse:
        """Get one dispatch.

        Args:
            request: The request.
            context: The call context.

        Returns:
            The dispatch.

        """
        detail = f"{request.microgrid_id}, {request.dispatch_id}"
        await self._admit_unary(context, "GetMicrogridDispatch", detail)
        async with _status_errors(context, "GetMicrogridDispatch"):
            dispatch = self._store.get(request.microgrid_id, request.dispatch_id)
        return dispatch_pb2.GetMicrogridDispatchResponse(
            microgrid_id=request.microgrid_id, dispatch=dispatch
        )

    async def DeleteMicrogridDispatch(
        self, request: dispatch_pb2.DeleteMicrogridDispatchRequest, context: Context
    ) -> dispatch_pb2.DeleteMicrogridDispatchResponse:
        """Delete one dispatch.

        Args:
            request: The request.
            context: The call context.

        Returns:
            The ids of the deleted dispatch.

        """
        detail = f"{request.microgrid_id}, {request.dispatch_id}"
        await self._admit_unary(context, "DeleteMicrogridDispatch", detail)
        async with _status_errors(context, "DeleteMicrogridDispatch"):
            self._store.delete(request.microgrid_id, request.dispatch_id)
        return dispatch_pb2.DeleteMicrogridDispatchResponse(
            microgrid_id=request.microgrid_id, dispatch_id=request.dispatch_id
        )
