"""HostPowerAction on the agent: check the node named, ask the driver, log who asked and what
it did. What happens to the agent itself afterwards (stop, reboot) is the Agent's (app.py)."""

from __future__ import annotations

import logging

from berth.client.errors import BerthError
from berth.v1 import compute_pb2, host_pb2

from services.common import auth, validation
from services.compute.drivers.base import PowerAction, PowerOutcome, PowerState
from services.compute.manager import ComputeManager

log = logging.getLogger(__name__)

ACTIONS = {
    host_pb2.POWER_ACTION_STARTUP: PowerAction.STARTUP,
    host_pb2.POWER_ACTION_SHUTDOWN: PowerAction.SHUTDOWN,
    host_pb2.POWER_ACTION_REBOOT: PowerAction.REBOOT,
}
_STATES = {PowerState.ON: host_pb2.POWER_STATE_ON, PowerState.OFF: host_pb2.POWER_STATE_OFF}
_LOGGED_NODES = 10  # nodes named in the log line; a rack may have thousands


def action(field: str, value: int) -> PowerAction:
    """The action a request names; INVALID_ARGUMENT naming `field` when unknown or unset."""
    return ACTIONS[validation.enum(field, value, host_pb2.PowerAction)]


def node_powers(outcome: PowerOutcome) -> list[host_pb2.NodePower]:
    return [
        host_pb2.NodePower(nodename=nodename, power_state=_STATES[state])
        for nodename, state in outcome.nodes
    ]


def response(action: PowerAction, outcome: PowerOutcome) -> compute_pb2.HostPowerActionResponse:
    number = next(k for k, v in ACTIONS.items() if v is action)
    return compute_pb2.HostPowerActionResponse(
        action=number, result=outcome.result, nodes=node_powers(outcome)
    )


def _power_summary(outcome: PowerOutcome) -> str:
    shown = [f"{nodename}={state.value}" for nodename, state in outcome.nodes[:_LOGGED_NODES]]
    more = len(outcome.nodes) - _LOGGED_NODES
    return ", ".join(shown) + (f", … ({len(outcome.nodes)} in all)" if more > 0 else "")


async def act(manager: ComputeManager, action: PowerAction, nodename: str) -> PowerOutcome:
    """Ask the driver for `action` on the host (or its node `nodename`); logged either way."""
    where = {
        "by": auth.current_principal.get().name,
        "host": manager.host,
        "driver": manager.driver.name,
        "action": action.value,
        "nodename": nodename or "-",
    }
    try:
        if nodename:
            manager.tracker_for(nodename)  # NOT_FOUND naming the host's nodes
        outcome = await manager.driver.power_action(action, nodename or None)
    except BerthError as exc:
        log.warning(
            "host power action refused", extra=where | {"code": exc.code.name, "error": exc}
        )
        raise
    extra = where | {"result": outcome.result}
    if outcome.nodes:
        extra["power"] = _power_summary(outcome)
    log.info("host power action", extra=extra)
    return outcome
