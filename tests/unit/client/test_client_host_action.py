"""HostClient.host_action: the action by name or number, the node, and the answer as it is."""

from __future__ import annotations

import pytest
from berth.client import HostClient, errors
from berth.client.host import power_action
from berth.v1 import host_pb2 as hpb
from client_fakes import FakeChannel


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("reboot", hpb.POWER_ACTION_REBOOT),
        ("Shutdown", hpb.POWER_ACTION_SHUTDOWN),
        ("POWER_ACTION_STARTUP", hpb.POWER_ACTION_STARTUP),
        (hpb.POWER_ACTION_REBOOT, hpb.POWER_ACTION_REBOOT),
    ],
)
def test_host_action_sends_the_action_named_or_numbered_and_the_node(given, sent):
    answer = hpb.HostActionResponse(host="h1", action=sent, result="done")
    channel = FakeChannel(HostAction=answer)

    assert HostClient(channel).host_action("h1", given, nodename="n1") == answer
    [(name, request, _)] = channel.calls
    assert (name, request.host, request.action, request.nodename) == (
        "HostAction",
        "h1",
        sent,
        "n1",
    )


def test_an_unknown_action_name_is_refused_before_any_call_naming_the_field():
    with pytest.raises(errors.InvalidArgument) as err:
        power_action("hibernate")
    assert [v.field for v in err.value.violations] == ["action"]
    assert "startup, shutdown, reboot" in err.value.message
