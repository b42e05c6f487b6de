"""Nova's error bodies: `{"itemNotFound": {"code": 404, "message": "..."}}`, and which Berth
error becomes which HTTP status. A client never sees a traceback; an unexpected error
answers 500 `computeFault` with the request id the log has the details under."""

from __future__ import annotations

from berth.client.errors import (
    Aborted,
    AlreadyExists,
    BerthError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

# Nova's names for the body's single key, by status (nova/api/openstack/wsgi.py).
_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflict",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


class Fault(Exception):
    """An answer in Nova's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, dict[str, object]]:
        return {
            _NAMES.get(self.status, "computeFault"): {"code": self.status, "message": self.message}
        }


# Berth's errors as the statuses Nova gives the same situations.
_STATUSES: tuple[tuple[type[BerthError], int], ...] = (
    (InvalidArgument, 400),
    (NotFound, 404),
    (AlreadyExists, 409),
    (FailedPrecondition, 409),
    (Aborted, 409),
    # No valid host: Nova accepts the boot and puts the server in ERROR; Berth keeps no
    # record of an instance no agent holds, so it answers now (see README).
    (ResourceExhausted, 409),
    (PermissionDenied, 403),
    (Unimplemented, 501),
    # The API's own credentials were refused by a Berth service: the operator's to fix.
    (Unauthenticated, 503),
    (Unavailable, 503),
    (DeadlineExceeded, 503),
)


def from_berth(error: BerthError) -> Fault:
    """The Fault a Berth service's error becomes; its sentence is kept, as it says what to do,
    with the offending fields it does not name already."""
    details = "; ".join(
        f"{v.field}: {v.description}"
        for v in error.violations
        if v.description not in error.message
    )
    message = f"{error.message} ({details})" if details else error.message
    for kind, status in _STATUSES:
        if isinstance(error, kind):
            return Fault(status, message)
    return Fault(500, "Unexpected API Error. The berth-api log has the details.")
