"""The gRPC front end: ``google.cloud.tasks.v2.CloudTasks`` (and ``v2beta3``) on ``grpc.aio``.

Requests and responses are the protobuf messages of ``google-cloud-tasks``
(registered through a generic handler, no generated stubs are vendored); every
call is delegated to :class:`emulator.core.Emulator` (v2beta3 calls through the
translation of emulator/v2beta3.py). Methods the emulator does
not implement answer UNIMPLEMENTED with a message naming the alternative, and
request bytes that do not parse answer INVALID_ARGUMENT, as on Google.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

import grpc
from google.cloud import tasks_v2, tasks_v2beta3
from google.iam.v1 import iam_policy_pb2
from google.protobuf import empty_pb2

from emulator import v2beta3
from emulator.core import Emulator
from emulator.errors import ApiError
from emulator.state import QueuePb, TaskPb
from emulator.v2beta3 import V2beta3Api

SERVICE = "google.cloud.tasks.v2.CloudTasks"
b3Queue: Any = tasks_v2beta3.Queue.pb()
b3Task: Any = tasks_v2beta3.Task.pb()
log = logging.getLogger("emulator.grpc")

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request whose bytes did not parse (see :func:`_parser`)."""

    type_name: str
    error: str


def _parser(message_type: Any) -> Callable[[bytes], Any]:
    """A request deserializer that never raises.

    grpc answers UNKNOWN (and logs a traceback) when a deserializer raises;
    Google answers INVALID_ARGUMENT. So a parse failure becomes an
    :class:`_Undecodable` request that :func:`_checked` rejects.
    """
    type_name = message_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except Exception as exc:  # DecodeError, or anything else the bytes provoke
            return _Undecodable(type_name, str(exc) or type(exc).__name__)

    return parse


def _checked(handler: Handler) -> Handler:
    async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Invalid request: {request.error}: send a serialized {request.type_name} message",
            )
        return await handler(request, context)

    return checked


def _wrap(fn: Callable[[Any], Any]) -> Handler:
    """``fn`` answers the request, or returns an awaitable that does (CreateTask's
    group commit)."""

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            result = fn(request)
            if isawaitable(result):
                result = await result
        except ApiError as exc:
            await context.abort(exc.code, exc.message)
        except Exception as exc:  # a bug must answer INTERNAL, never kill the server
            log.exception("internal error in %s", getattr(fn, "__name__", "rpc"))
            await context.abort(grpc.StatusCode.INTERNAL, f"Emulator internal error: {exc}")
        return empty_pb2.Empty() if result is None else result

    return handler


def _unimplemented(what: str) -> Handler:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, what)

    return handler


_IAM = (
    "IAM policies are not emulated by the Cloud Tasks emulator: every caller may "
    "create and run tasks. Test IAM wiring with the Pulumi plan instead."
)


class _Services(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Several services' handlers as one (v2 and v2beta3 on the same server)."""

    def __init__(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.handlers = handlers

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        for handler in self.handlers:
            found = handler.service(handler_call_details)
            if found is not None:
                return found
        return None


def generic_handler(emulator: Emulator) -> grpc.GenericRpcHandler:
    """Both API versions over the one core: v2, and v2beta3 through emulator/v2beta3.py."""
    beta = V2beta3Api(emulator)
    return _Services(
        (
            _service(SERVICE, tasks_v2, emulator, QueuePb, TaskPb, emulator.create_task_grouped),
            _service(v2beta3.SERVICE, tasks_v2beta3, beta, b3Queue, b3Task, beta.create_task),
        )
    )


def _service(
    name: str, t: Any, api: Any, queue: Any, task: Any, create_task: Callable[[Any], Any]
) -> grpc.GenericRpcHandler:
    def rpc(fn: Callable[[Any], Any], request: Any, response: Any) -> grpc.RpcMethodHandler:
        return raw(_wrap(fn), request.pb(), response)

    def raw(handler: Handler, request_type: Any, response: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            _checked(handler),
            request_deserializer=_parser(request_type),
            response_serializer=response.SerializeToString,
        )

    empty = empty_pb2.Empty
    methods = {
        "CreateQueue": rpc(api.create_queue, t.CreateQueueRequest, queue),
        "GetQueue": rpc(api.get_queue, t.GetQueueRequest, queue),
        "ListQueues": rpc(api.list_queues, t.ListQueuesRequest, t.ListQueuesResponse.pb()),
        "UpdateQueue": rpc(api.update_queue, t.UpdateQueueRequest, queue),
        "DeleteQueue": rpc(api.delete_queue, t.DeleteQueueRequest, empty),
        "PurgeQueue": rpc(api.purge_queue, t.PurgeQueueRequest, queue),
        "PauseQueue": rpc(api.pause_queue, t.PauseQueueRequest, queue),
        "ResumeQueue": rpc(api.resume_queue, t.ResumeQueueRequest, queue),
        "CreateTask": rpc(create_task, t.CreateTaskRequest, task),
        "GetTask": rpc(api.get_task, t.GetTaskRequest, task),
        "ListTasks": rpc(api.list_tasks, t.ListTasksRequest, t.ListTasksResponse.pb()),
        "DeleteTask": rpc(api.delete_task, t.DeleteTaskRequest, empty),
        "RunTask": rpc(api.run_task, t.RunTaskRequest, task),
        "GetIamPolicy": raw(_unimplemented(_IAM), iam_policy_pb2.GetIamPolicyRequest, empty),
        "SetIamPolicy": raw(_unimplemented(_IAM), iam_policy_pb2.SetIamPolicyRequest, empty),
        "TestIamPermissions": raw(
            _unimplemented(_IAM), iam_policy_pb2.TestIamPermissionsRequest, empty
        ),
    }
    return grpc.method_handlers_generic_handler(name, methods)
