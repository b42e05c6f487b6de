"""Compute settings: Nova's defaults, and bounds that stop the process by variable name."""

from __future__ import annotations

import pytest

from services.common.settings import load_settings
from services.compute.settings import ComputeSettings


def test_the_defaults_are_novas():
    settings = ComputeSettings()
    assert settings.listen_address == "127.0.0.1:50054"
    assert settings.driver == "fake"
    assert (settings.cpu_allocation_ratio, settings.ram_allocation_ratio) == (16.0, 1.5)
    assert settings.disk_allocation_ratio == 1.0
    assert settings.reserved_host_memory_mb == 512
    assert settings.update_resources_interval == 60.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BERTH_DRIVER", "xen"),
        ("BERTH_FAKE_VCPUS", "0"),
        ("BERTH_FAKE_VCPUS", str(2**31)),
        ("BERTH_FAKE_NODES", "10001"),
        ("BERTH_FAKE_CLUSTER_MEMBERS", "0"),
        ("BERTH_CPU_ALLOCATION_RATIO", "0"),
        ("BERTH_RESERVED_HOST_MEMORY_MB", "-1"),
        ("BERTH_UPDATE_RESOURCES_INTERVAL", "0"),
        ("BERTH_NODE_URL", "no-port"),
        ("BERTH_FAKE_IRONIC_RESOURCE_CLASS", "BAREMETAL"),
        ("BERTH_FAKE_IRONIC_RESOURCE_CLASS", "CUSTOM_baremetal"),
        ("BERTH_FAKE_IRONIC_RESOURCE_CLASS", "CUSTOM_"),
        ("BERTH_FAKE_IRONIC_RESOURCE_CLASS", ""),
    ],
)
def test_an_invalid_value_stops_with_a_message_naming_the_variable(
    monkeypatch, capsys, name, value
):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        load_settings(ComputeSettings)
    assert f"invalid setting {name}" in capsys.readouterr().err


def test_an_empty_node_url_is_allowed():
    assert ComputeSettings(node_url="").node_url == ""


def test_a_bad_resource_class_says_what_placement_accepts(monkeypatch, capsys):
    monkeypatch.setenv("BERTH_FAKE_IRONIC_RESOURCE_CLASS", "baremetal-gold")
    with pytest.raises(SystemExit):
        load_settings(ComputeSettings)
    err = capsys.readouterr().err
    assert "invalid setting BERTH_FAKE_IRONIC_RESOURCE_CLASS" in err
    assert "CUSTOM_ followed by upper-case letters, digits and underscores" in err


def test_fake_ironic_offers_custom_baremetal_unless_told_otherwise(monkeypatch):
    assert ComputeSettings().fake_ironic_resource_class == "CUSTOM_BAREMETAL"
    monkeypatch.setenv("BERTH_FAKE_IRONIC_RESOURCE_CLASS", "CUSTOM_BAREMETAL_GOLD")
    assert load_settings(ComputeSettings).fake_ironic_resource_class == "CUSTOM_BAREMETAL_GOLD"
