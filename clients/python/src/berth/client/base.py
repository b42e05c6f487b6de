"""What every typed Berth client shares: connecting, closing, and calls that raise BerthError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import grpc

from berth.client.channel import DEFAULT_TIMEOUT, open_channel, parse_target, translate_error

Resp = TypeVar("Resp")
Stub = TypeVar("Stub")


class BaseClient(Generic[Stub]):
    """Owns (or borrows) one channel; subclasses name their generated stub
    (`class RegistryClient(BaseClient[RegistryServiceStub])`) and add typed methods."""

    # Named in error sentences: "cannot reach the registry at 127.0.0.1:50051: ...".
    server_name = "server"
    # The generated stub class this client wraps; subclasses set it.
    stub_class: Callable[[grpc.Channel], Stub]

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        target: str = "",
        timeout: float | None = DEFAULT_TIMEOUT,
        owns_channel: bool = False,
    ) -> None:
        self.channel = channel
        self.target = target
        self.timeout = timeout
        self._owns_channel = owns_channel
        self._stub: Stub = self.stub_class(channel)

    @classmethod
    def connect(
        cls,
        target: str,
        token: str | None = None,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Self:
        """Open a channel to `target` (host:port, grpc://..., grpcs://...) owned by the client."""
        channel = open_channel(
            target,
            token=token,
            tls_ca_file=tls_ca_file,
            tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file,
            timeout=timeout,
        )
        address, _ = parse_target(target)
        return cls(channel, target=address, timeout=timeout, owns_channel=True)

    def close(self) -> None:
        """Close the channel if this client opened it; a borrowed channel stays open."""
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: Callable[..., Resp], request: Any) -> Resp:
        """One unary call with the client's deadline; grpc errors come out as BerthError."""
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._translate(error) from error

    def _stream(self, method: Callable[..., Any], request: Any) -> Iterator[Any]:
        """A server stream without deadline, cancelled when the caller stops iterating."""
        call = method(request)
        try:
            yield from call
        except grpc.RpcError as error:
            raise self._translate(error) from error
        finally:
            call.cancel()

    def _translate(self, error: grpc.RpcError) -> Exception:
        return translate_error(
            error, server=self.server_name, target=self.target, timeout=self.timeout
        )
