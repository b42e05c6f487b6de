"""Racing registrations of one (host, binary) leave one row."""

from __future__ import annotations

import asyncio

from berth.v1 import registry_pb2


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
