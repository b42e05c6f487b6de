"""host-action (Nova's os-hosts power actions): start up, shut down or reboot a host through
its compute agent's driver. Each request is logged: who asked, the host, the action and
what became of it."""

from __future__ import annotations

import logging
from typing import cast

from berth.client.errors import BerthError
from berth.v1 import compute_pb2, host_pb2

from services.common import auth, validation
from services.registry.agent_link import AgentLink
from services.registry.liveness import Clock, utcnow

log = logging.getLogger(__name__)

_WHAT = {
    host_pb2.POWER_ACTION_STARTUP: "start it up",
    host_pb2.POWER_ACTION_SHUTDOWN: "shut it down",
    host_pb2.POWER_ACTION_REBOOT: "reboot it",
}


class PowerActions:
    def __init__(self, agent_link: AgentLink, clock: Clock = utcnow) -> None:
        self._agent_link = agent_link
        self._clock = clock

    async def act(self, request: host_pb2.HostActionRequest) -> host_pb2.HostActionResponse:
        host = validation.name("host", request.host)
        action = cast(
            host_pb2.PowerAction.ValueType,
            validation.enum("action", request.action, host_pb2.PowerAction),
        )
        nodename = validation.name("nodename", request.nodename, required=False)
        requested_at = self._clock()
        asked = {
            "by": auth.current_principal.get().name,
            "host": host,
            "action": host_pb2.PowerAction.Name(action).removeprefix("POWER_ACTION_").lower(),
            "nodename": nodename or "-",
        }
        try:
            answer: compute_pb2.HostPowerActionResponse = await self._agent_link.call(
                host,
                lambda stub: stub.HostPowerAction,
                compute_pb2.HostPowerActionRequest(action=action, nodename=nodename),
                what=_WHAT[action],
            )
        except BerthError as exc:
            log.warning(
                "host action refused",
                extra=asked | {"code": exc.code.name, "reason": exc.reason, "error": exc.message},
            )
            raise
        log.info("host action", extra=asked | {"result": answer.result, "nodes": len(answer.nodes)})
        response = host_pb2.HostActionResponse(
            host=host,
            action=action,
            result=answer.result,
            nodes=answer.nodes,
        )
        response.requested_at.FromDatetime(requested_at)
        return response
