"""Cache storage behind one small async interface: memory (cachetools), disk (diskcache), Redis (redis-py).

The cache key is a sha256 of ``Request.cache_identity()`` (everything that changes the answer,
never the API key); values are the JSON of a ``Completion`` (text and metadata, no secrets).
"""

from newsdesk._cache._stores import (
    CacheStats,
    CacheStore,
    DiskStore,
    LayeredStore,
    MemoryStore,
    RedisStore,
    cache_key,
    open_cache,
)

__all__ = [
    "CacheStats",
    "CacheStore",
    "DiskStore",
    "LayeredStore",
    "MemoryStore",
    "RedisStore",
    "cache_key",
    "open_cache",
]
