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


def test_the_drawn_exception_tree_is_the_class_tree() -> None:
    """The tree drawn in ``_exceptions``' docstring says the truth about each class's parent."""
    import re

    import newsdesk._exceptions as ex

    assert ex.__doc__ is not None
    parents: list[str] = []  # the chain of names above the current line, by depth
    drawn = 0
    for line in ex.__doc__.splitlines():
        match = re.match(r"^    ((?:[│ ]   )*(?:[├└]── )?)([A-Z]\w+)\b", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4
        name = match.group(2)
        cls = getattr(ex, name)
        if depth:
            assert cls.__bases__[0] is getattr(ex, parents[depth - 1]), name
        parents[depth:] = [name]
        drawn += 1
    assert drawn == len(ex.__all__)
