"""Redis clients for production metering: one Redis, or a Redis Cluster.

``GATEWAY_REDIS_URL`` names a cluster with the scheme ``redis+cluster://`` (``rediss+cluster://``
for TLS): any one node's address, the others are discovered. Both clients fail fast: the hot
path must answer 503, not hang in backoff.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

Client = Redis | RedisCluster
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# What an unreachable or reconfiguring Redis raises. A cluster with no slot map yet (all nodes
# down, or a slot without a master during a failover) raises RedisClusterException, which is
# not a RedisError.
DOWN: tuple[type[Exception], ...] = (RedisError, RedisClusterException)


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def connect(url: str, *, socket_timeout: float = 2.0, max_connections: int = 256) -> Client:
    """A client for ``url``: ``redis://``/``rediss://`` one Redis, ``redis+cluster://`` a cluster.

    One Redis: one immediate retry (a pooled connection may predate a restart), then the error;
    the pool blocks (bounded) when all connections are busy, so a burst waits instead of failing.
    A cluster: redis-py follows MOVED/ASK and refreshes the slot map after a connection error
    (a failover), with ``max_connections`` per node."""
    scheme, _, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    if plain is not None:
        return RedisCluster.from_url(
            f"{plain}://{rest}",
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 2),
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)
