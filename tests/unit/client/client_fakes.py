"""Fakes for client tests: a failed grpc call and a channel that answers from a table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import grpc
from berth.client.errors import BerthError


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a sync stub raises: code(), details() and trailing_metadata()."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self._code, self._details, self._trailing = code, details, tuple(trailing)

    @classmethod
    def from_berth(cls, error: BerthError) -> FakeRpcError:
        """The call a Berth server's interceptor produces for `error`."""
        status = error.to_status()
        return cls(
            error.code,
            status.message,
            [("grpc-status-details-bin", status.SerializeToString())],
        )

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing

    # grpc.Call's remaining abstract methods; never used by the client.
    def initial_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class FakeStreamCall:
    """A server stream: iterates the given responses, remembers whether it was cancelled."""

    def __init__(self, responses: Iterable[Any], error: Exception | None = None) -> None:
        self._responses = list(responses)
        self._error = error
        self.cancelled = False

    def __iter__(self):
        yield from self._responses
        if self._error is not None:
            raise self._error

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeChannel:
    """Stands in for grpc.Channel under a generated stub; answers by RPC name.

    `answers["ListServices"]` may be a response, a list of responses (one per call), an
    exception to raise, or a function of the request.
    """

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[tuple[str, Any, float | None]] = []
        self.streams: list[FakeStreamCall] = []
        self.closed = False

    def _answer(self, name: str, request: Any) -> Any:
        answer = self.answers[name]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        name = method.rsplit("/", 1)[-1]

        def call(request: Any, timeout: float | None = None, **_: Any) -> Any:
            self.calls.append((name, _copy(request), timeout))
            return self._answer(name, request)

        return call

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        name = method.rsplit("/", 1)[-1]

        def call(request: Any, timeout: float | None = None, **_: Any) -> FakeStreamCall:
            self.calls.append((name, request, timeout))
            stream = self._answer(name, request)
            self.streams.append(stream)
            return stream

        return call

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return self.unary_unary(method)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return self.unary_stream(method)

    def close(self) -> None:
        self.closed = True


def _copy(message: Any) -> Any:
    # Callers may reuse and change a request after sending it (paging does); record it as sent.
    copy = type(message)()
    copy.CopyFrom(message)
    return copy
