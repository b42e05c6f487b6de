"""The SQL of maintenance mode: hosts in maintenance, their leases, and instance moves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.store.models import HostMaintenance, InstanceMove

# Move states (InstanceMove.state).
PENDING = "PENDING"
SELECTED = "SELECTED"
BUILT = "BUILT"
DONE = "DONE"
FAILED = "FAILED"
# Rows a new maintenance keeps: a move under way is finished, never forgotten.
IN_FLIGHT = (SELECTED, BUILT)


async def get(
    session: AsyncSession, host: str, *, for_update: bool = False
) -> HostMaintenance | None:
    query = select(HostMaintenance).where(HostMaintenance.host == host)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


def add(session: AsyncSession, host: str, now: datetime) -> None:
    """A row for `host`, not in maintenance; commit it alone (a racing replica's insert of
    the same host fails on the unique host, which the caller may ignore)."""
    session.add(
        HostMaintenance(host=host, enabled=False, moving=False, started_at=now, updated_at=now)
    )


async def set_enabled(session: AsyncSession, host: str, enabled: bool, now: datetime) -> bool:
    """Enter (or leave) maintenance in the caller's transaction (the row exists: add());
    True when the host was not in maintenance before (a new maintenance: the moves of an
    earlier one are forgotten, except those still under way)."""
    row = await get(session, host, for_update=True)
    assert row is not None, "add() the host's row first"
    fresh = enabled and not row.enabled
    if fresh:
        row.started_at = now
        await session.execute(
            delete(InstanceMove).where(
                InstanceMove.host == host, InstanceMove.state.not_in(IN_FLIGHT)
            )
        )
    row.enabled = enabled
    row.updated_at = now
    return fresh


async def take_lease(
    session: AsyncSession, host: str, owner: str, now: datetime, until: datetime
) -> bool:
    """Claim the right to conduct `host`'s moves: free, expired, or already ours."""
    result = await session.execute(
        update(HostMaintenance)
        .where(
            HostMaintenance.host == host,
            or_(
                HostMaintenance.lease_owner.is_(None),
                HostMaintenance.lease_owner == owner,
                HostMaintenance.lease_expires_at < now,
            ),
        )
        .values(lease_owner=owner, lease_expires_at=until, moving=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1


async def renew_lease(session: AsyncSession, host: str, owner: str, until: datetime) -> bool:
    """Extend our lease; False when it is no longer ours."""
    result = await session.execute(
        update(HostMaintenance)
        .where(HostMaintenance.host == host, HostMaintenance.lease_owner == owner)
        .values(lease_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1


async def release_lease(
    session: AsyncSession, host: str, owner: str, *, finished: bool, now: datetime
) -> None:
    """Give the lease up; `finished` ends the pass, otherwise it waits to be resumed."""
    values: dict[str, object] = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    if finished:
        values["moving"] = False
    await session.execute(
        update(HostMaintenance)
        .where(HostMaintenance.host == host, HostMaintenance.lease_owner == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def interrupted(session: AsyncSession, now: datetime) -> Sequence[str]:
    """Hosts whose pass of moves nobody conducts: its registry died or stopped."""
    query = select(HostMaintenance.host).where(
        HostMaintenance.enabled.is_(True),
        HostMaintenance.moving.is_(True),
        or_(
            HostMaintenance.lease_owner.is_(None),
            and_(
                HostMaintenance.lease_expires_at.is_not(None),
                HostMaintenance.lease_expires_at < now,
            ),
        ),
    )
    return (await session.execute(query)).scalars().all()


# --- moves ----------------------------------------------------------------------------


async def moves(session: AsyncSession, host: str) -> Sequence[InstanceMove]:
    query = (
        select(InstanceMove).where(InstanceMove.host == host).order_by(InstanceMove.instance_uuid)
    )
    return (await session.execute(query)).scalars().all()


async def all_moves(session: AsyncSession) -> Sequence[InstanceMove]:
    query = select(InstanceMove).order_by(InstanceMove.host, InstanceMove.instance_uuid)
    return (await session.execute(query)).scalars().all()


async def move(session: AsyncSession, host: str, instance_uuid: str) -> InstanceMove | None:
    query = select(InstanceMove).where(
        InstanceMove.host == host, InstanceMove.instance_uuid == instance_uuid
    )
    return (await session.execute(query)).scalar_one_or_none()


def add_moves(
    session: AsyncSession,
    host: str,
    uuids: Iterable[str],
    now: datetime,
    *,
    state: str = PENDING,
    reason: str = "",
) -> None:
    session.add_all(
        InstanceMove(
            host=host, instance_uuid=u, state=state, destination_host="",
            destination_nodename="", claim_id="", reason=reason, created_at=now, updated_at=now,
        )
        for u in uuids
    )  # fmt: skip


async def save_move(session: AsyncSession, row_id: int, now: datetime, **values: str) -> None:
    await session.execute(
        update(InstanceMove)
        .where(InstanceMove.id == row_id)
        .values(updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )


async def delete_moves(session: AsyncSession, row_ids: Sequence[int]) -> None:
    if row_ids:
        await session.execute(delete(InstanceMove).where(InstanceMove.id.in_(row_ids)))
