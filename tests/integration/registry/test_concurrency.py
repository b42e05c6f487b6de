"""Racing registrations leave one row per (host, binary), through one replica or several,
alone or in the group commit's batches."""

from __future__ import annotations

import asyncio

import pytest
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio

from services.registry.metrics import REGISTRATION_BATCH


async def test_fifty_concurrent_registrations_of_one_key_leave_one_row(stub):
    responses = await asyncio.gather(
        *(
            stub.RegisterService(
                registry_pb2.RegisterServiceRequest(host="race", binary="berth-compute")
            )
            for _ in range(50)
        )
    )
    assert len({r.service.uuid for r in responses}) == 1
    assert sum(r.created for r in responses) == 1
    assert sorted(r.service.version for r in responses) == list(range(1, 51))
    listed = (await stub.ListServices(registry_pb2.ListServicesRequest(host="race"))).services
    assert len(listed) == 1 and listed[0].version == 50


def _batches() -> tuple[float, float]:
    """(transactions, registrations) the registration group commit has stored so far."""
    samples = {s.name: s.value for s in REGISTRATION_BATCH.collect()[0].samples}
    return samples["berth_registration_batch_size_count"], samples[
        "berth_registration_batch_size_sum"
    ]


async def test_a_burst_of_registrations_is_stored_in_batches_each_answered_as_alone(stub):
    await stub.RegisterService(
        registry_pb2.RegisterServiceRequest(host="b-old", binary="berth-compute")
    )
    before = _batches()
    hosts = [f"b-{i:03d}" for i in range(300)] + ["b-old", "b-007", "b-007"]
    responses = await asyncio.gather(
        *(
            stub.RegisterService(
                registry_pb2.RegisterServiceRequest(host=h, binary="berth-compute")
            )
            for h in hosts
        )
    )
    by_host: dict[str, list] = {}
    for host, response in zip(hosts, responses, strict=True):
        assert response.service.host == host
        by_host.setdefault(host, []).append(response)
    for host, answers in by_host.items():
        assert len({a.service.uuid for a in answers}) == 1, host  # one row per service
        created = [a.created for a in answers]
        # The first registration of a new service creates it; every later one restarts it.
        assert sum(created) == (0 if host == "b-old" else 1), host
        assert sorted(a.service.version for a in answers) == list(
            range(1 + (host == "b-old"), 1 + (host == "b-old") + len(answers))
        ), host
    listed = (await stub.ListServices(registry_pb2.ListServicesRequest(page_size=1000))).services
    assert sorted(s.host for s in listed) == sorted(by_host)
    transactions, stored = (a - b for a, b in zip(_batches(), before, strict=True))
    assert stored == len(hosts)
    assert transactions < len(hosts) / 2, "the burst should have shared transactions"


async def test_replicas_registering_the_same_burst_leave_one_row_per_service(start, database):
    if database.backend == "sqlite":
        pytest.skip("replicas share a server database; SQLite is the single-process default")
    replicas = [await start(), await start()]
    channels = [aio.insecure_channel(r.address) for r in replicas]
    try:
        stubs = [registry_pb2_grpc.RegistryServiceStub(c) for c in channels]
        hosts = [f"r-{i:03d}" for i in range(150)]
        # Every service registers through both replicas at once: their batches collide.
        responses = await asyncio.gather(
            *(
                s.RegisterService(
                    registry_pb2.RegisterServiceRequest(host=h, binary="berth-compute")
                )
                for h in hosts
                for s in stubs
            )
        )
        for i, host in enumerate(hosts):
            pair = responses[2 * i : 2 * i + 2]
            assert pair[0].service.uuid == pair[1].service.uuid, host
            assert sorted(r.created for r in pair) == [False, True], host
            assert sorted(r.service.version for r in pair) == [1, 2], host
        listed = (
            await stubs[0].ListServices(registry_pb2.ListServicesRequest(page_size=1000))
        ).services
        assert sorted(s.host for s in listed) == hosts
    finally:
        for channel in channels:
            await channel.close()
