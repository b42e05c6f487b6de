"""Is a Berth server up? grpc.health.v1 Check, without the grpcio-health-checking
dependency (the client package does not need it); `berth health` for container health
checks and scripts."""

from __future__ import annotations

import argparse
import urllib.request
from typing import Any

import grpc

from berth.cli.output import Output

SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING


def decode_health_status(data: bytes) -> int:
    """HealthCheckResponse bytes -> its `status` (field 1, a varint; absent means UNKNOWN 0)."""
    status, i = 0, 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:  # varint
            value, i = _varint(data, i)
            if field == 1:
                status = value
        elif wire_type == 2:  # length-delimited: skip a field a newer server might add
            length, i = _varint(data, i)
            i += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type} in a health response")
    return status


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def health_status(address: str, timeout: float = 1.0) -> int:
    """Ask the whole server (service "") how it is; 0 when it does not answer yet. An
    `http://` address is an HTTP server's health URL (berth-api's /healthz): SERVING when it
    answers 200."""
    if address.startswith(("http://", "https://")):
        return _http_status(address, timeout)
    with grpc.insecure_channel(address) as channel:
        return channel_health(channel, timeout)


def channel_health(channel: grpc.Channel, timeout: float = 1.0) -> int:
    """grpc.health.v1 Check of the whole server over an open channel; 0 when it does not
    answer."""
    check: grpc.UnaryUnaryMultiCallable[None, int] = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        # HealthCheckRequest{service: ""} has no set fields, so it encodes to no bytes.
        request_serializer=lambda _request: b"",
        response_deserializer=decode_health_status,
    )
    try:
        return int(check(None, timeout=timeout))
    except grpc.RpcError:
        return 0


def _http_status(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return SERVING if response.status == 200 else 0
    except (OSError, ValueError):  # refused, timed out, an HTTP error status, a bad URL
        return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "health",
        parents=[common],
        help="Exit 0 when every named server answers SERVING (a container's health check).",
        description="Asks grpc.health.v1 Check of each ADDRESS (default: the registry); "
        "public, so no token is needed. Exits 1 naming each server that is not serving.",
    )
    p.add_argument(
        "addresses",
        nargs="*",
        metavar="ADDRESS",
        help="host:port of a gRPC server, or the http:// health URL of berth-api",
    )
    p.add_argument("--timeout-each", type=float, default=2.0, metavar="SECONDS")
    p.set_defaults(func=health_command, client=None)


def health_command(_client: None, args: argparse.Namespace, out: Output) -> int:
    addresses = [a.removeprefix("grpc://") for a in args.addresses or [args.registry]]
    failing = [a for a in addresses if health_status(a, args.timeout_each) != SERVING]
    for address in addresses:
        out.note(f"{address}: {'not serving' if address in failing else 'serving'}")
    if args.json:
        out.json({address: address not in failing for address in addresses})
    return 1 if failing else 0
