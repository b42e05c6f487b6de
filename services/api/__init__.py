"""berth-api: the OpenStack Compute API (v2.1 with microversions) over Berth's services.

It owns no table: each request becomes calls to the registry, node service, scheduler and
agents, as `berth` makes them, so `openstack` and openstacksdk drive Berth unchanged."""
