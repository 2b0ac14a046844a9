"""The gRPC front end: ``google.cloud.tasks.v2.CloudTasks`` on a ``grpc.aio`` server.

Requests and responses are the protobuf messages of ``google-cloud-tasks``
(registered through a generic handler, no generated stubs are vendored); every
call is delegated to :class:`emulator.core.Emulator`. Methods the emulator does
not implement answer UNIMPLEMENTED with a message naming the alternative, and
request bytes that do not parse answer INVALID_ARGUMENT, as on Google.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud import tasks_v2
from google.iam.v1 import iam_policy_pb2
from google.protobuf import empty_pb2

from emulator.core import Emulator
from emulator.errors import ApiError
from emulator.state import QueuePb, TaskPb

SERVICE = "google.cloud.tasks.v2.CloudTasks"
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
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            result = fn(request)
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


def generic_handler(emulator: Emulator) -> grpc.GenericRpcHandler:
    def rpc(fn: Callable[[Any], Any], request: Any, response: Any) -> grpc.RpcMethodHandler:
        return raw(_wrap(fn), request.pb(), response)

    def raw(handler: Handler, request_type: Any, response: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            _checked(handler),
            request_deserializer=_parser(request_type),
            response_serializer=response.SerializeToString,
        )

    t = tasks_v2
    empty = empty_pb2.Empty
    methods = {
        "CreateQueue": rpc(emulator.create_queue, t.CreateQueueRequest, QueuePb),
        "GetQueue": rpc(emulator.get_queue, t.GetQueueRequest, QueuePb),
        "ListQueues": rpc(emulator.list_queues, t.ListQueuesRequest, t.ListQueuesResponse.pb()),
        "UpdateQueue": rpc(emulator.update_queue, t.UpdateQueueRequest, QueuePb),
        "DeleteQueue": rpc(emulator.delete_queue, t.DeleteQueueRequest, empty),
        "PurgeQueue": rpc(emulator.purge_queue, t.PurgeQueueRequest, QueuePb),
        "PauseQueue": rpc(emulator.pause_queue, t.PauseQueueRequest, QueuePb),
        "ResumeQueue": rpc(emulator.resume_queue, t.ResumeQueueRequest, QueuePb),
        "CreateTask": rpc(emulator.create_task, t.CreateTaskRequest, TaskPb),
        "GetTask": rpc(emulator.get_task, t.GetTaskRequest, TaskPb),
        "ListTasks": rpc(emulator.list_tasks, t.ListTasksRequest, t.ListTasksResponse.pb()),
        "DeleteTask": rpc(emulator.delete_task, t.DeleteTaskRequest, empty),
        "RunTask": rpc(emulator.run_task, t.RunTaskRequest, TaskPb),
        "GetIamPolicy": raw(_unimplemented(_IAM), iam_policy_pb2.GetIamPolicyRequest, empty),
        "SetIamPolicy": raw(_unimplemented(_IAM), iam_policy_pb2.SetIamPolicyRequest, empty),
        "TestIamPermissions": raw(
            _unimplemented(_IAM), iam_policy_pb2.TestIamPermissionsRequest, empty
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)
