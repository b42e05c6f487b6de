"""A fake registry client for CLI tests: records each call, answers from canned data."""

from __future__ import annotations

import io
from typing import Any

from berth.cli.main import main
from berth.v1 import common_pb2
from berth.v1 import host_pb2 as hpb
from berth.v1 import registry_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

UUID = "6f1c1f9e-2a1b-4c3d-8e9f-0a1b2c3d4e5f"
AGG_UUID = "0b8d7c1e-1111-4222-8333-944455556666"


def service(**fields: Any) -> pb.Service:
    defaults: dict[str, Any] = dict(
        uuid=UUID,
        host="cmp1",
        binary="berth-compute",
        availability_zone="nova",
        up=True,
        last_seen_up=Timestamp(seconds=1_700_000_000, nanos=123_456_000),
    )
    defaults.update(fields)
    return pb.Service(**defaults)


def aggregate(**fields: Any) -> pb.Aggregate:
    defaults: dict[str, Any] = dict(
        uuid=AGG_UUID,
        name="rack1",
        availability_zone="az1",
        hosts=["cmp1", "cmp2"],
        metadata={"availability_zone": "az1", "ssd": "true"},
    )
    defaults.update(fields)
    return pb.Aggregate(**defaults)


class FakeRegistry:
    """Stands in for RegistryClient (and, as `.hosts`, for HostClient)."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail or {}
        down = service(
            uuid="u2",
            host="cmp2",
            disabled=True,
            up=False,
            disabled_reason="bad disk",
            forced_down=True,
        )
        self.services = [service(), down]
        self.closed = False

    def __enter__(self) -> FakeRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    @property
    def hosts(self) -> FakeRegistry:
        return self

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))
        if name in self.fail:
            raise self.fail[name]

    def list_services(self, **kwargs: Any) -> Any:
        self._record("list_services", **kwargs)
        return iter(self.services)

    def enable_service(self, **kwargs: Any) -> pb.Service:
        self._record("enable_service", **kwargs)
        return service()

    def disable_service(self, **kwargs: Any) -> pb.Service:
        self._record("disable_service", **kwargs)
        return service(disabled=True, disabled_reason=kwargs.get("reason", ""))

    def force_down(self, **kwargs: Any) -> pb.Service:
        self._record("force_down", **kwargs)
        return service(forced_down=not kwargs.get("unset"))

    def delete_service(self, **kwargs: Any) -> None:
        self._record("delete_service", **kwargs)

    def list_hosts(self, **kwargs: Any) -> Any:
        self._record("list_hosts", **kwargs)
        return iter(
            [
                hpb.HostSummary(host_name="cmp1", service="compute", zone="nova"),
                hpb.HostSummary(host_name="ctl1", service="registry", zone="internal"),
            ]
        )

    def describe_host(self, host: str) -> list[hpb.HostResourceRow]:
        self._record("describe_host", host)
        total = common_pb2.Resources(vcpus=16, memory_mb=65536, disk_gb=900)
        used = common_pb2.Resources(vcpus=4, memory_mb=8192, disk_gb=80)
        return [
            hpb.HostResourceRow(host=host, project="(total)", resources=total),
            hpb.HostResourceRow(host=host, project="(used_now)", resources=used),
        ]

    def create_aggregate(self, name: str, **kwargs: Any) -> pb.Aggregate:
        self._record("create_aggregate", name, **kwargs)
        return aggregate(name=name, availability_zone=kwargs.get("availability_zone", ""))

    def delete_aggregate(self, name: str) -> None:
        self._record("delete_aggregate", name)

    def list_aggregates(self) -> Any:
        self._record("list_aggregates")
        return iter([aggregate(), aggregate(uuid="a2", name="rack2", availability_zone="")])

    def get_aggregate(self, name: str) -> pb.Aggregate:
        self._record("get_aggregate", name)
        return aggregate(name=name)

    def add_aggregate_host(self, name: str, host: str) -> pb.Aggregate:
        self._record("add_aggregate_host", name, host)
        return aggregate(name=name)

    def remove_aggregate_host(self, name: str, host: str) -> pb.Aggregate:
        self._record("remove_aggregate_host", name, host)
        return aggregate(name=name, hosts=["cmp2"])

    def set_aggregate_metadata(self, name: str, metadata: dict[str, str]) -> pb.Aggregate:
        self._record("set_aggregate_metadata", name, metadata)
        return aggregate(name=name)


class Run:
    """One `berth` invocation against a FakeRegistry: exit code, stdout, stderr."""

    def __init__(
        self, argv: list[str], fake: FakeRegistry | None = None, env: dict | None = None
    ) -> None:
        self.fake = fake or FakeRegistry()
        self.connected: list[Any] = []
        out, err = io.StringIO(), io.StringIO()

        def connect(args: Any) -> FakeRegistry:
            self.connected.append(args)
            return self.fake

        self.code = main(argv, connect=connect, env=env or {}, stdout=out, stderr=err)
        self.out, self.err = out.getvalue(), err.getvalue()
