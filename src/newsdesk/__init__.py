"""newsdesk: streaming, concurrent, cached LLM calls on LiteLLM — and news analysis built on them.

from newsdesk import Request, LiteLLMClient
"""

from newsdesk._cache import CacheStore, DiskStore, MemoryStore, RedisStore, open_cache
from newsdesk._client import Batch, BatchStats, Gateway, LiteLLMClient, Outcome, default_gateway
from newsdesk._exceptions import (
    BadResponse,
    ConfigError,
    MissingAPIKeyError,
    MissingExtraError,
    NewsdeskError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SourceError,
    StoreError,
    TruncatedAnswer,
    UnknownModelError,
    UserError,
)
from newsdesk._request import Message, Request
from newsdesk._response import Chunk, Response, Usage
from newsdesk._wrappers import Limits, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "BadResponse",
    "Batch",
    "BatchStats",
    "CacheStore",
    "Chunk",
    "ConfigError",
    "DiskStore",
    "Gateway",
    "LiteLLMClient",
    "Limits",
    "MemoryStore",
    "Message",
    "MissingAPIKeyError",
    "MissingExtraError",
    "NewsdeskError",
    "Outcome",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RedisStore",
    "Request",
    "Response",
    "RetryPolicy",
    "SourceError",
    "StoreError",
    "TruncatedAnswer",
    "UnknownModelError",
    "Usage",
    "UserError",
    "default_gateway",
    "open_cache",
    "__version__",
]
