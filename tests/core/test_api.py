"""The public API is exactly the intended set of names."""

from __future__ import annotations

import newsdesk

INTENDED = {
    # requests and answers
    "Request",
    "Message",
    "Response",
    "Chunk",
    "Usage",
    # running them
    "LiteLLMClient",
    "Gateway",
    "default_gateway",
    "Batch",
    "Outcome",
    "BatchStats",
    "Limits",
    "RetryPolicy",
    # caches
    "CacheStore",
    "MemoryStore",
    "DiskStore",
    "RedisStore",
    "open_cache",
    # errors
    "NewsdeskError",
    "UserError",
    "ConfigError",
    "UnknownModelError",
    "MissingAPIKeyError",
    "MissingExtraError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "ProviderUnavailable",
    "BadResponse",
    "TruncatedAnswer",
    "SourceError",
    "StoreError",
    "__version__",
}


def test_all_is_exactly_the_intended_set() -> None:
    assert set(newsdesk.__all__) == INTENDED
    assert len(newsdesk.__all__) == len(set(newsdesk.__all__))  # no duplicates


def test_every_exported_name_exists() -> None:
    for name in newsdesk.__all__:
        assert hasattr(newsdesk, name), name


def test_error_tree() -> None:
    from newsdesk import (
        BadResponse,
        ConfigError,
        MissingAPIKeyError,
        NewsdeskError,
        ProviderError,
        ProviderTimeout,
        ProviderUnavailable,
        RateLimited,
        TruncatedAnswer,
        UnknownModelError,
        UserError,
    )

    for user in (ConfigError, UnknownModelError, MissingAPIKeyError):
        assert issubclass(user, UserError) and issubclass(user, NewsdeskError)
    for provider in (
        ProviderTimeout,
        RateLimited,
        ProviderUnavailable,
        BadResponse,
        TruncatedAnswer,
    ):
        assert issubclass(provider, ProviderError) and provider.retryable
    assert issubclass(TruncatedAnswer, BadResponse)
    assert not ProviderError.retryable


def test_importing_newsdesk_does_not_import_litellm() -> None:
    import subprocess
    import sys

    code = "import newsdesk, sys; assert 'litellm' not in sys.modules and 'llama_cpp' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
