"""flavors: Berth's flavors (Nova's defaults and a bare-metal one), read-only. Nova's ids
are kept ("1" is m1.tiny ... "5" is m1.xlarge); a name is accepted where an id is."""

from __future__ import annotations

from typing import Any

from berth.client.flavors import DEFAULT_EXTRA_SPECS, DEFAULT_FLAVORS
from starlette.requests import Request
from starlette.responses import Response

from services.api.faults import Fault
from services.api.requests import answer, at_least, link, paged, query_int

# Nova's ids of its default flavors, in DEFAULT_FLAVORS' order (baremetal is the 6th).
FLAVOR_IDS = {name: str(index) for index, name in enumerate(DEFAULT_FLAVORS, 1)}
DESCRIPTIONS = {"baremetal": "A whole bare-metal server of the class CUSTOM_BAREMETAL."}


def flavor_named(ref: str) -> str:
    """The name of the flavor an id (or name, or link ending in one) refers to."""
    ref = ref.rstrip("/").rsplit("/", 1)[-1]
    for name, flavor_id in FLAVOR_IDS.items():
        if ref in (flavor_id, name):
            return name
    raise Fault(404, f"Flavor {ref} could not be found.")


def view(request: Request, name: str, *, detail: bool) -> dict[str, Any]:
    flavor_id = FLAVOR_IDS[name]
    shown: dict[str, Any] = {
        "id": flavor_id,
        "name": name,
        "links": link(request, "flavors", flavor_id),
    }
    if at_least(request, "2.55"):
        shown["description"] = DESCRIPTIONS.get(name)
    if not detail:
        return shown
    vcpus, ram, disk = DEFAULT_FLAVORS[name]
    shown.update(
        {
            "vcpus": vcpus,
            "ram": ram,
            "disk": disk,
            "swap": 0 if at_least(request, "2.75") else "",
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "OS-FLV-DISABLED:disabled": False,
            "os-flavor-access:is_public": True,
            "rxtx_factor": 1.0,
        }
    )
    if at_least(request, "2.61"):
        shown["extra_specs"] = dict(DEFAULT_EXTRA_SPECS.get(name, {}))
    return shown


def _chosen(request: Request) -> list[str]:
    """The flavors `minRam` and `minDisk` leave, smallest first (Nova's default order is
    by flavorid)."""
    min_ram = query_int(request, "minRam") or 0
    min_disk = query_int(request, "minDisk") or 0
    return [
        n for n, (_, ram, disk) in DEFAULT_FLAVORS.items() if ram >= min_ram and disk >= min_disk
    ]


def _listing(request: Request, *, detail: bool) -> Response:
    shown = [view(request, name, detail=detail) for name in _chosen(request)]
    page, links = paged(request, shown, "id", collection="flavors/detail" if detail else "flavors")
    data: dict[str, Any] = {"flavors": page}
    if links:
        data["flavors_links"] = links
    return answer(data)


async def list_flavors(request: Request) -> Response:
    return _listing(request, detail=False)


async def detail(request: Request) -> Response:
    return _listing(request, detail=True)


async def show(request: Request) -> Response:
    return answer(
        {"flavor": view(request, flavor_named(request.path_params["flavor_id"]), detail=True)}
    )


async def extra_specs(request: Request) -> Response:
    name = flavor_named(request.path_params["flavor_id"])
    return answer({"extra_specs": dict(DEFAULT_EXTRA_SPECS.get(name, {}))})


ROUTES = [
    ("/flavors", list_flavors, ["GET"]),
    ("/flavors/detail", detail, ["GET"]),
    ("/flavors/{flavor_id}", show, ["GET"]),
    ("/flavors/{flavor_id}/os-extra_specs", extra_specs, ["GET"]),
]
