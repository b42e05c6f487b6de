"""Where things live in Redis. Per-node keys carry the node uuid as a hash tag, so each
script touches one Cluster slot."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    def node(self, node_uuid: str) -> str:
        return f"{self.prefix}:node:{{{node_uuid}}}"

    def claims(self, node_uuid: str) -> str:
        return f"{self.prefix}:claims:{{{node_uuid}}}"

    def node_of_claims_key(self, key: str) -> str:
        return key[key.index("{") + 1 : key.rindex("}")]

    @property
    def claims_pattern(self) -> str:
        return f"{self.prefix}:claims:*"

    @property
    def hosts(self) -> str:
        """Hash host -> what the registry says about it (JSON)."""
        return f"{self.prefix}:hosts"

    @property
    def meta(self) -> str:
        """Present only once the cache has been built: its absence means a flushed or new
        Redis, and the scheduler rebuilds."""
        return f"{self.prefix}:meta"

    @property
    def channel(self) -> str:
        """Pub/sub channel carrying the claims key of every node whose claims changed."""
        return f"{self.prefix}:claim-events"

    def group(self, name: str) -> str:
        return f"{self.prefix}:group:{name}"


# Claim ids are this process's random 32 bits and a 32-bit counter: unique across replicas
# and restarts, without a system call per claim (the ids a claim of the same node could
# meet are those of claims alive at the same time).
_PROCESS_TOKEN = secrets.randbits(32) << 32
_counter = itertools.count()


def new_claim_id(node_uuid: str) -> str:
    """The node rides in the claim id, so a release finds the node without a lookup."""
    token = _PROCESS_TOKEN | next(_counter) & 0xFFFFFFFF
    return f"{node_uuid}.{token:016x}"


def node_of_claim(claim_id: str) -> str | None:
    node_uuid, sep, token = claim_id.rpartition(".")
    return node_uuid if sep and len(token) == 16 and len(node_uuid) == 36 else None
