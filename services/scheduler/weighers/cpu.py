"""CPUWeigher: prefer nodes with more free vCPUs (spread), or fewer with a negative multiplier."""

from __future__ import annotations

from services.scheduler.columns import VCPU, FloatArray, View
from services.scheduler.weighers.base import Weigher


class CPUWeigher(Weigher):
    """Prefers the node with the most free vCPUs.

    Raw weight: total x cpu_allocation_ratio - (used + pending claims), as
    nova/scheduler/weights/cpu.py (`vcpus_total * cpu_allocation_ratio - vcpus_used`,
    vcpus_used grown by consume_from_request); unlike RAM and disk, Nova's CPU weigher
    does count the ratio. Spreading by CPU keeps noisy neighbours apart on overcommitted
    nodes; a negative multiplier packs. minval 0 as in Nova.
    """

    name = "CPUWeigher"
    minval = 0.0

    def raw(self, view: View) -> FloatArray:
        vcpus = view.total[VCPU] * view.cpu_allocation_ratio
        return vcpus - (view.used[VCPU] + view.claimed[VCPU])
