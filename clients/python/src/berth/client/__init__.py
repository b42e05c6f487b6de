"""Typed, synchronous Python clients for Berth, raising the typed errors of berth.client.errors."""

from berth.client.channel import DEFAULT_TIMEOUT, open_channel
from berth.client.compute import ComputeClient
from berth.client.errors import (
    Aborted,
    AlreadyExists,
    BerthError,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    from_rpc_error,
)
from berth.client.host import HostClient
from berth.client.node import NodeClient
from berth.client.paging import paginate
from berth.client.registry import RegistryClient
from berth.client.scheduler import SchedulerClient
from berth.client.servers import BootResult, DeleteResult

__all__ = [
    "DEFAULT_TIMEOUT",
    "Aborted",
    "AlreadyExists",
    "BerthError",
    "BootResult",
    "ComputeClient",
    "DeadlineExceeded",
    "DeleteResult",
    "FailedPrecondition",
    "FieldViolation",
    "HostClient",
    "Internal",
    "InvalidArgument",
    "NodeClient",
    "NotFound",
    "PermissionDenied",
    "RegistryClient",
    "ResourceExhausted",
    "SchedulerClient",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "from_rpc_error",
    "open_channel",
    "paginate",
]
