"""The columnar HostState: one row per node, one numpy array per fact.

Filters and weighers read whole columns at once (a request over 100,000 nodes is a few
dozen array operations, not 100,000 Python objects). The mirror owns the rows and writes
them; everything else reads through a `View` of all rows or of chosen rows.

Resources are kept per dimension in 2-D arrays indexed `[VCPU | MEMORY | DISK, row]`, so a
dimension is one contiguous array.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

VCPU, MEMORY, DISK = 0, 1, 2

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
RowIndex = npt.NDArray[np.intp]


def find_sorted(rows: RowIndex, values: RowIndex) -> tuple[RowIndex, BoolArray]:
    """Where each of `values` stands in the sorted, non-empty `rows`, and whether it is
    there. np.minimum, not .clip: on a few values clip's Python wrapper costs more than
    the search."""
    at = np.minimum(rows.searchsorted(values), len(rows) - 1)
    return at, rows[at] == values


class Columns:
    """The arrays, grown by doubling. Rows of deleted nodes are reused; `live` says which
    rows hold a node (every fact of a dead row is zero, so it passes no filter)."""

    # Per dimension: what a row's report says, and what follows from it and the claims.
    RESOURCE_FIELDS: ClassVar[tuple[str, ...]] = (
        "total",  # reported total
        "used",  # reported used (the instances plus the host's reserved amounts)
        "capacity",  # Placement: (total - reserved) x ratio (a whole machine: total)
        "usage",  # Placement's used: what the instances hold (used - reserved)
        "claimed",  # pending claims
        "free",  # capacity - usage - claimed: what one more claim may take
    )
    INT_FIELDS: ClassVar[tuple[str, ...]] = (
        "num_instances",  # reported instances
        "claim_count",  # pending claims
        "io_ops",
        "host_id",  # index into Mirror.host_names
        "zone_id",  # index into Mirror.zone_names (0: no zone)
        "hypervisor_id",  # index into Mirror.hypervisor_types (lower case)
        "resource_class_id",  # index into Mirror.resource_classes (0: a host of VMs)
        "stamp",  # Mirror.version when the row was last written
    )
    FLOAT_FIELDS: ClassVar[tuple[str, ...]] = ("cpu_allocation_ratio",)
    BOOL_FIELDS: ClassVar[tuple[str, ...]] = (
        "live",
        "service_up",
        "service_enabled",
        "whole_machine",
    )

    def __init__(self, size: int = 1024) -> None:
        self.size = 0
        self._allocate(max(size, 16))

    def _allocate(self, size: int) -> None:
        old = {name: getattr(self, name) for name in self._names()} if self.size else {}
        for name in self.RESOURCE_FIELDS:
            setattr(self, name, np.zeros((3, size), np.int64))
        for name in self.INT_FIELDS:
            setattr(self, name, np.zeros(size, np.int64))
        for name in self.FLOAT_FIELDS:
            setattr(self, name, np.zeros(size, np.float64))
        for name in self.BOOL_FIELDS:
            setattr(self, name, np.zeros(size, np.bool_))
        for name, array in old.items():
            getattr(self, name)[..., : array.shape[-1]] = array
        self.size = size

    def _names(self) -> tuple[str, ...]:
        return self.RESOURCE_FIELDS + self.INT_FIELDS + self.FLOAT_FIELDS + self.BOOL_FIELDS

    def ensure(self, rows: int) -> bool:
        """Room for `rows` rows; True if the arrays were reallocated."""
        if rows <= self.size:
            return False
        size = self.size
        while size < rows:
            size *= 2
        self._allocate(size)
        return True

    def clear(self, row: int) -> None:
        for name in self._names():
            if name != "stamp":
                getattr(self, name)[..., row] = 0

    # Declared for type checkers; set by _allocate.
    total: IntArray
    used: IntArray
    capacity: IntArray
    usage: IntArray
    claimed: IntArray
    free: IntArray
    num_instances: IntArray
    claim_count: IntArray
    io_ops: IntArray
    host_id: IntArray
    zone_id: IntArray
    hypervisor_id: IntArray
    resource_class_id: IntArray
    stamp: IntArray
    cpu_allocation_ratio: FloatArray
    live: BoolArray
    service_up: BoolArray
    service_enabled: BoolArray
    whole_machine: BoolArray


class View:
    """Columns as filters and weighers read them: every row (`rows` None), or the chosen
    rows (an index array), each attribute an array aligned with those rows. Read only: a
    chosen rows' array is taken once per view (filters and weighers read the same few
    columns), and every row's is the column itself."""

    __slots__ = ("_columns", "_taken", "rows")

    def __init__(self, columns: Columns, rows: RowIndex | None = None) -> None:
        self._columns = columns
        self.rows = rows
        self._taken: dict[str, npt.NDArray[np.generic]] = {}

    def __getattr__(self, name: str) -> Any:  # a column's array (its dtype varies)
        if self.rows is None:
            return getattr(self._columns, name)
        taken = self._taken.get(name)
        if taken is None:
            array: npt.NDArray[np.generic] = getattr(self._columns, name)
            # take is much faster than array[..., rows]; the method skips np.take's wrapper
            taken = self._taken[name] = array.take(self.rows, axis=-1)
        return taken

    def __len__(self) -> int:
        return self._columns.size if self.rows is None else len(self.rows)
