"""Booting and deleting instances: the scheduler chooses and claims, each host's agent builds.

    boot    SelectDestinations once for every instance (claimed primaries, unclaimed
            alternates)
            -> per instance: BuildInstance on the primary's agent with its claim and the
               flavor's extra specs (the agent checks the resource class they ask for)
               refused -> release that claim, ClaimAlternate the next alternate, build there
               connection lost mid-call -> not tried elsewhere: it may exist there
            -> release every claim of an instance not built
    delete  ListNodeInstances(instance_uuids) says where each instance is
            -> DeleteInstance on that host's agent, whose next snapshot reports the
               instance's claim as released (a claim no report confirmed yet stops
               counting then, not when it expires)

Every claim a boot receives is consumed by a build or released, on every path; claims that
cannot be released (the scheduler gone) expire on their own.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from berth.client.channel import CONNECTION_LOST
from berth.client.compute import ComputeClient
from berth.client.errors import (
    Aborted,
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from berth.client.flavors import flavor_resources
from berth.client.node import NodeClient
from berth.client.registry import RegistryClient
from berth.client.scheduler import SchedulerClient
from berth.v1 import node_pb2
from berth.v1 import scheduler_pb2 as pb

log = logging.getLogger(__name__)

# The registry's binary of a compute agent; its row holds the agent's endpoint.
COMPUTE_BINARY = "berth-compute"
# Instances built or deleted at once.
MAX_PARALLEL = 8

# An agent that answers with one of these did not build the instance; another node may.
_TRY_NEXT: tuple[type[BerthError], ...] = (
    ResourceExhausted,
    Unavailable,
    FailedPrecondition,
    Aborted,
    NotFound,
)

# The reason of a DeleteResult whose instance no node reports.
NOT_FOUND = "INSTANCE_NOT_FOUND"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BootResult:
    """One instance of a boot: where it was built, or why it was not."""

    instance_uuid: str
    host: str = ""
    nodename: str = ""
    node_uuid: str = ""
    # The claim the build consumed.
    claim_id: str = ""
    # Destinations tried (the primary is 1).
    attempts: int = 0
    # Why it was not built, for people ('' once built); `reason` is the stable code.
    error: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class DeleteResult:
    """One instance of a delete: the host it was deleted on, or why not."""

    instance_uuid: str
    host: str = ""
    nodename: str = ""
    error: str = ""
    # INSTANCE_NOT_FOUND when no node reports the instance.
    reason: str = ""
    # The name it was booted with, as its node reports it.
    name: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def not_found(self) -> bool:
        return self.reason == NOT_FOUND


class AgentPool:
    """Compute agent clients by host, for one workflow: each host's endpoint is asked of the
    registry once, one channel per endpoint is shared by every call, close() closes them."""

    def __init__(self, registry: RegistryClient, connect: Callable[[str], ComputeClient]) -> None:
        self._registry = registry
        self._connect = connect
        self._lock = threading.Lock()
        # host -> its agent, or (sentence, reason) when it cannot be reached.
        self._by_host: dict[str, ComputeClient | tuple[str, str]] = {}
        self._by_endpoint: dict[str, ComputeClient] = {}

    def agent(self, host: str) -> ComputeClient:
        """The agent of `host`; Unavailable when it is unregistered, down or unreachable."""
        with self._lock:
            found = self._by_host.get(host)
            if found is None:
                found = self._by_host[host] = self._lookup(host)
        if isinstance(found, tuple):
            message, reason = found
            raise Unavailable(message, reason=reason, metadata={"host": host})
        return found

    def _lookup(self, host: str) -> ComputeClient | tuple[str, str]:
        try:
            service = self._registry.get_service(host=host, binary=COMPUTE_BINARY)
        except NotFound:
            return f"host {host} has no compute agent in the registry", "AGENT_NOT_REGISTERED"
        except BerthError as exc:
            return f"cannot find the compute agent of host {host}: {exc.message}", exc.reason
        if not service.up:
            return f"the compute agent of host {host} is down", "AGENT_DOWN"
        if not service.endpoint:
            return f"the compute agent of host {host} registered no endpoint", "AGENT_NO_ENDPOINT"
        client = self._by_endpoint.get(service.endpoint)
        if client is None:
            try:
                client = self._connect(service.endpoint)
            except BerthError as exc:
                return (
                    f"cannot connect to the compute agent of host {host} at "
                    f"{service.endpoint}: {exc.message}",
                    "AGENT_UNREACHABLE",
                )
            self._by_endpoint[service.endpoint] = client
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._by_endpoint, self._by_host = list(self._by_endpoint.values()), {}, {}
        for client in clients:
            try:
                client.close()
            except Exception as exc:  # closing is best effort; the results stand
                log.debug("closing an agent channel failed: %s", exc)


class _Claims:
    """The claims of one boot that are neither consumed by a build nor released yet."""

    def __init__(self, scheduler: SchedulerClient, selections: Iterable[pb.Selection]) -> None:
        self._scheduler = scheduler
        self._lock = threading.Lock()
        self._held = {claim.claim_id for s in selections for claim in _candidates(s)}
        self._held.discard("")

    def claim_alternate(self, spec: pb.RequestSpec, alternate: pb.Claim) -> pb.Claim:
        """Claim an alternate (held from then on); a claimed one is returned as it is."""
        if alternate.claim_id:
            return alternate
        claim = self._scheduler.claim_alternate(spec, alternate.instance_uuid, alternate.node_uuid)
        with self._lock:
            self._held.add(claim.claim_id)
        return claim

    def consumed(self, claim_id: str) -> None:
        with self._lock:
            self._held.discard(claim_id)

    def release(self, claim_ids: Iterable[str]) -> None:
        """Release those of `claim_ids` still held; if the scheduler cannot be told, they
        stay held for release_all() to try again."""
        with self._lock:
            ids = sorted(self._held.intersection(claim_ids))
            self._held.difference_update(ids)
        if not ids:
            return
        try:
            self._scheduler.release_claims(ids)
        except BerthError as exc:
            log.warning("cannot release %d claim(s) yet: %s", len(ids), exc)
            with self._lock:
                self._held.update(ids)

    def release_all(self) -> None:
        with self._lock:
            ids = set(self._held)
        self.release(ids)
        with self._lock:
            left = len(self._held)
        if left:
            log.warning("%d claim(s) could not be released; the scheduler expires them", left)


def _candidates(selection: pb.Selection) -> list[pb.Claim]:
    """The primary, then the alternates in the scheduler's order."""
    primary = [selection.primary] if selection.HasField("primary") else []
    return [*primary, *selection.alternates]


def _serialized(progress: Callable[[R], None] | None) -> Callable[[R], R]:
    """Pass each result to `progress` (one call at a time, from any worker) and return it."""
    lock = threading.Lock()

    def report(result: R) -> R:
        if progress is not None:
            with lock:
                progress(result)
        return result

    return report


def _each(items: Sequence[T], work: Callable[[T], R], max_parallel: int) -> list[R]:
    """work(item) for every item, at most `max_parallel` at once; results in item order.
    On an exception (or Ctrl-C) work not started is dropped, running work is waited for,
    and the exception is raised."""
    if max_parallel < 1:
        raise InvalidArgument.field("max_parallel", f"must be at least 1 (got {max_parallel})")
    if max_parallel == 1 or len(items) <= 1:
        return [work(item) for item in items]
    executor = ThreadPoolExecutor(min(max_parallel, len(items)), thread_name_prefix="berth")
    try:
        futures = [executor.submit(work, item) for item in items]
        return [future.result() for future in futures]
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _default_connect(timeout: float | None) -> Callable[[str], ComputeClient]:
    def connect(endpoint: str) -> ComputeClient:
        return ComputeClient.connect(endpoint, timeout=timeout)

    return connect


# -- boot --------------------------------------------------------------------------------------


def boot(
    spec: pb.RequestSpec,
    *,
    scheduler: SchedulerClient,
    registry: RegistryClient,
    connect_agent: Callable[[str], ComputeClient] | None = None,
    max_parallel: int = MAX_PARALLEL,
    progress: Callable[[BootResult], None] | None = None,
    names: Mapping[str, str] | None = None,
) -> list[BootResult]:
    """Place and build `spec.num_instances` instances; one BootResult per instance, in the
    scheduler's order, each built or saying why not. `names` (instance uuid -> name) are
    kept with the instances, as is the flavor's name.

    `connect_agent(endpoint)` opens a compute agent's client (default: plaintext with the
    scheduler client's deadline; pass one for tokens or TLS). `progress` is called once
    per instance as it finishes. Nothing placeable raises what SelectDestinations raised
    (ResourceExhausted, naming the filters) before anything is claimed.
    """
    selections = scheduler.select_destinations(spec)
    claims = _Claims(scheduler, selections)
    agents = AgentPool(registry, connect_agent or _default_connect(scheduler.timeout))
    report = _serialized(progress)
    try:
        return _each(
            selections,
            lambda s: report(_build(s, spec, agents, claims, names or {})),
            max_parallel,
        )
    finally:
        agents.close()
        claims.release_all()


def _build(
    selection: pb.Selection,
    spec: pb.RequestSpec,
    agents: AgentPool,
    claims: _Claims,
    names: Mapping[str, str],
) -> BootResult:
    """Build one instance on the first of its destinations whose agent accepts it."""
    candidates = _candidates(selection)
    uuid = selection.instance_uuid or (candidates[0].instance_uuid if candidates else "")
    refusals: list[str] = []
    last: BerthError | None = None
    claim = pb.Claim()
    try:
        for attempt, candidate in enumerate(candidates, 1):
            where = f"{candidate.host}/{candidate.nodename}"
            sent = False
            try:
                claim = claims.claim_alternate(spec, candidate) if attempt > 1 else candidate
                resources = (
                    claim.resources
                    if claim.HasField("resources")
                    else flavor_resources(spec.flavor)
                )
                agent = agents.agent(claim.host)
                sent = True
                built = agent.build_instance(
                    uuid,
                    project_id=spec.project_id,
                    user_id=spec.user_id,
                    vcpus=resources.vcpus,
                    memory_mb=resources.memory_mb,
                    disk_gb=resources.disk_gb,
                    nodename=claim.nodename,
                    claim_id=claim.claim_id,
                    server_group=spec.hints.group,
                    group_policy=spec.hints.group_policy,
                    # Its resource class: the agent checks it against the node's.
                    flavor_extra_specs=spec.flavor.extra_specs,
                    name=names.get(uuid, ""),
                    flavor_name=spec.flavor.name,
                )
            except BerthError as exc:
                last = exc
                refusals.append(f"{where}: {exc.message}")
                claims.release([claim.claim_id])
                if sent and exc.reason == CONNECTION_LOST:
                    # The agent may have built it before the connection broke (killed
                    # mid-call): built elsewhere too, it would run on two hosts. It is
                    # reported where it is once that agent is back (ERROR if the build was
                    # cut short), and delete() finds it there; its room is counted by that
                    # report, and the agent's own tracker refuses builds meanwhile.
                    break
                if isinstance(exc, _TRY_NEXT):
                    log.info("%s refused instance %s, next destination: %s", where, uuid, exc)
                    continue
                break  # the request itself is at fault (or the outcome is unknown): stop
            claims.consumed(claim.claim_id)
            return BootResult(
                uuid,
                host=built.host or claim.host,
                nodename=built.nodename or claim.nodename,
                node_uuid=built.node_uuid or claim.node_uuid,
                claim_id=claim.claim_id,
                attempts=attempt,
            )
    finally:
        # Built or not, no other destination of this instance will be used.
        claims.release([claim.claim_id, *(c.claim_id for c in candidates)])
    if last is None:
        return BootResult(uuid, error="the scheduler gave no destination", reason="NO_DESTINATION")
    return BootResult(
        uuid,
        attempts=len(refusals),
        error="; ".join(refusals),
        reason=last.reason,
    )


# -- delete ------------------------------------------------------------------------------------


def delete(
    uuids: Iterable[str],
    *,
    node: NodeClient,
    registry: RegistryClient,
    connect_agent: Callable[[str], ComputeClient] | None = None,
    max_parallel: int = MAX_PARALLEL,
    progress: Callable[[DeleteResult], None] | None = None,
) -> list[DeleteResult]:
    """Delete instances on the hosts the node service says they are on; one DeleteResult
    per distinct uuid, in the order given. A uuid no node reports is `not_found`; a
    malformed one is InvalidArgument before anything is deleted."""
    wanted = _canonical(uuids)
    where: dict[str, list[node_pb2.Instance]] = {}
    for instance in node.instances_by_uuid(wanted):
        where.setdefault(instance.uuid, []).append(instance)
    agents = AgentPool(registry, connect_agent or _default_connect(node.timeout))
    report = _serialized(progress)
    try:
        return _each(wanted, lambda u: report(_delete(u, where.get(u, []), agents)), max_parallel)
    finally:
        agents.close()


def _canonical(uuids: Iterable[str]) -> list[str]:
    """Each uuid once, in its canonical spelling (as the node service stores it)."""
    seen: dict[str, None] = {}
    for index, text in enumerate(uuids):
        try:
            seen[str(uuidlib.UUID(text.strip()))] = None
        except ValueError:
            raise InvalidArgument.field(
                f"uuids[{index}]", f"must be an instance UUID (got {text[:64]!r})"
            ) from None
    return list(seen)


def _delete(uuid: str, instances: list[node_pb2.Instance], agents: AgentPool) -> DeleteResult:
    if not instances:
        return DeleteResult(
            uuid, error=f"no compute node reports instance {uuid}", reason=NOT_FOUND
        )
    # An instance being moved may be reported by two nodes: delete it wherever it is.
    by_host = {instance.host: instance for instance in reversed(instances)}
    deleted_on: node_pb2.Instance | None = None
    failures, last_reason = [], ""
    for host, instance in by_host.items():
        try:
            agents.agent(host).delete_instance(uuid)
        except NotFound:
            continue  # gone since the node service heard of it
        except BerthError as exc:
            failures.append(f"{host}: {exc.message}")
            last_reason = exc.reason
        else:
            deleted_on = deleted_on or instance
    shown = deleted_on or instances[0]
    found = DeleteResult(uuid, host=shown.host, nodename=shown.nodename, name=shown.name)
    if failures:
        return dataclasses.replace(found, error="; ".join(failures), reason=last_reason)
    if deleted_on is None:
        return dataclasses.replace(
            found, error=f"host {shown.host} no longer has it", reason=NOT_FOUND
        )
    return found
