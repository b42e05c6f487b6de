"""Virt drivers, chosen by BERTH_DRIVER."""

from __future__ import annotations

import ipaddress

from services.common.settings import split_host_port
from services.compute.drivers.base import Driver, NodeInventory, NumaCell, PciPool
from services.compute.drivers.fake import FakeClusterDriver, FakeDriver, FakeIronicDriver
from services.compute.drivers.local import LocalDriver
from services.compute.settings import ComputeSettings
from services.compute.state import Resources

__all__ = ["Driver", "NodeInventory", "NumaCell", "PciPool", "build_driver"]


def host_ip(settings: ComputeSettings) -> str:
    """The address this host is known by (Nova's my_ip): the advertised one, else the
    listening one; loopback for every interface; empty when only a name is known (the node
    service takes IP addresses only)."""
    ip, _ = split_host_port(settings.advertise or settings.listen_address)
    if ip in ("", "0.0.0.0", "::", "localhost"):
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ""


def build_driver(settings: ComputeSettings) -> Driver:
    ip = host_ip(settings)
    machine = Resources(settings.fake_vcpus, settings.fake_memory_mb, settings.fake_disk_gb)
    reboot_s = settings.fake_reboot_seconds
    match settings.driver:
        case "fake":
            return FakeDriver(settings.host, ip, machine, reboot_s=reboot_s)
        case "fake-cluster":
            return FakeClusterDriver(
                settings.host, ip, machine, settings.fake_cluster_members, reboot_s=reboot_s
            )
        case "fake-ironic":
            return FakeIronicDriver(
                settings.host,
                ip,
                machine,
                settings.fake_nodes,
                settings.ironic_pool,
                settings.fake_ironic_resource_class,
            )
        case "local":
            return LocalDriver(settings.host, ip, settings.data_dir)
    raise AssertionError(f"unknown driver {settings.driver!r}")  # settings allow no other
