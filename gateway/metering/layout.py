"""Where the production metering keys live in Redis: every script touches one hash slot.

Each Lua script touches the keys of one user (balance, holds, pending credits, the quota
counters of the user and of their keys, settle markers) and, when it settles, the usage stream
the record goes to. A Redis Cluster runs a script only when all its keys share one hash slot,
so users are grouped in ``shards``: a shard's users' keys and the shard's usage stream carry
the shard's hash tag, and each process's stream writer reads every shard's stream.

    untagged (one shard on a single Redis, the default):   gw:u:<uid>  ...  gw:usage
    tagged   (a cluster, or GATEWAY_REDIS_SHARDS > 1):       gw:{s3.41}:u:<uid>  ...
                                                             gw:{s3.41}:usage

A user's shard is ``crc32(user_id) % shards``: stable across processes, restarts and
releases. Shard ``i``'s tag is the first ``s<i>.<k>`` whose slot lies in the ``i``-th equal
slice of the 16384 slots, so shards spread evenly over masters owning equal slot ranges
(which is what ``redis-cli --cluster create`` assigns). The untagged layout is the one every
release before shards used, so a single Redis keeps its data as it is.

A user's keys move when the shard count changes, and a balance reloaded from the ledger at its
new place would miss the usage still waiting in the old shard's stream; so the layout is
recorded in Redis (``<prefix>layout``) and a process with another one refuses to start
(``LayoutMismatch``). Changing it: stop every gateway, let none run until each stream is empty
(the writers drain them at stop), delete the old keys (or flush), then start with the new count.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

if TYPE_CHECKING:
    from gateway.metering.clients import Client

MAX_SHARDS = 256
QUOTA_KEYS = ("q", "qh", "qx", "qw", "qt")


class LayoutMismatch(ValueError):
    """Redis holds metering keys laid out for another shard count (see the module doc)."""


async def check_marker(redis: Client, layout: Layout) -> None:
    """Raises ``LayoutMismatch`` when Redis's layout marker names another layout than
    ``layout``'s; nothing when there is no marker yet. Raises what the client raises when
    Redis is down."""
    found = await redis.get(layout.marker_key)
    if found is None:
        return
    have = found.decode() if isinstance(found, bytes) else str(found)
    if have != layout.description:
        raise LayoutMismatch(
            f"Redis metering keys are laid out as {have}, this process as"
            f" {layout.description}: changing the shard count needs every stream drained"
            " first (README, Redis Cluster)"
        )


def shard_tag(shard: int, shards: int) -> str:
    """The hash tag (without braces) of ``shard`` of ``shards``: its slot is in the shard's
    equal slice of the slot space."""
    lo = shard * REDIS_CLUSTER_HASH_SLOTS // shards
    hi = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    k = 0
    while not lo <= key_slot(f"s{shard}.{k}".encode()) < hi:
        k += 1
    return f"s{shard}.{k}"


@dataclass(frozen=True)
class UserKeys:
    """One user's keys, all in one slot."""

    base: str  # "<prefix>" or "<prefix>{<tag>}:"
    user_id: str

    @property
    def balance(self) -> str:
        return f"{self.base}u:{self.user_id}"

    @property
    def holds(self) -> list[str]:
        """u, r, rx: what admit.lua and settle.lua start with."""
        return [self.balance, f"{self.base}r:{self.user_id}", f"{self.base}rx:{self.user_id}"]

    @property
    def pending(self) -> str:
        return f"{self.base}pc:{self.user_id}"

    @property
    def credited(self) -> str:
        return f"{self.base}cv:{self.user_id}"

    @property
    def stream(self) -> str:
        return f"{self.base}usage"

    def marker(self, request_id: str) -> str:
        return f"{self.base}s:{request_id}"

    def quota(self, scope: str) -> list[str]:
        """q, qh, qx, qw, qt of a scope of this user (``u:<uid>`` or one of their keys')."""
        return [f"{self.base}{name}:{scope}" for name in QUOTA_KEYS]


@dataclass(frozen=True)
class Layout:
    """The key layout of ``shards`` shards under ``prefix``; ``tagged`` is forced when
    ``shards > 1`` (untagged shards would scatter a user's keys over slots)."""

    prefix: str = "gw:"
    shards: int = 1
    tagged: bool = False
    bases: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"the shard count must be 1 to {MAX_SHARDS}, got {self.shards}")
        tagged = self.tagged or self.shards > 1
        object.__setattr__(self, "tagged", tagged)
        bases = (
            tuple(f"{self.prefix}{{{shard_tag(i, self.shards)}}}:" for i in range(self.shards))
            if tagged
            else (self.prefix,)
        )
        object.__setattr__(self, "bases", bases)

    @property
    def streams(self) -> tuple[str, ...]:
        """Every shard's usage stream, shard 0 first."""
        return tuple(f"{base}usage" for base in self.bases)

    @property
    def marker_key(self) -> str:
        return f"{self.prefix}layout"

    @property
    def description(self) -> str:
        """What ``marker_key`` holds for this layout."""
        return f"tagged:{self.shards}" if self.tagged else "untagged:1"

    def shard_of(self, user_id: str) -> int:
        return zlib.crc32(user_id.encode()) % self.shards

    def user(self, user_id: str) -> UserKeys:
        return UserKeys(self.bases[self.shard_of(user_id)], user_id)

    @property
    def balance_pattern(self) -> str:
        """SCAN pattern of every balance key of this layout (braces are literal in a glob)."""
        return f"{self.prefix}{{*}}:u:*" if self.tagged else f"{self.prefix}u:*"

    def user_of(self, key: str) -> str | None:
        """The user whose balance key ``key`` is; None for a key of another layout."""
        if self.tagged:
            if not key.startswith(f"{self.prefix}{{"):
                return None
            cut = key.find("}:u:", len(self.prefix))
            user_id = key[cut + 4 :] if cut >= 0 else ""
        else:
            user_id = key.removeprefix(f"{self.prefix}u:")
            if user_id == key:
                return None
        if not user_id or self.user(user_id).balance != key:
            return None
        return user_id
