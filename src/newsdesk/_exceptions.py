"""One exception tree for newsdesk.

    NewsdeskError                      every error newsdesk raises on purpose
    ├── UserError                      the caller's mistake: fix the input, don't retry
    │   ├── ConfigError                bad settings, flags, cache URL, sources file
    │   ├── UnknownModelError          LiteLLM does not know the model string
    │   ├── MissingAPIKeyError         a remote model without its key
    │   └── MissingExtraError          an optional part (web, agents, local model) not installed
    ├── ProviderError                  the model call failed (status_code/body when known)
    │   ├── ProviderTimeout            the request or deadline ran out
    │   ├── RateLimited                429; carries retry_after seconds when the provider said
    │   ├── ProviderUnavailable        connection refused, 5xx
    │   └── BadResponse                malformed reply, invalid structured answer
    │       └── TruncatedAnswer        stopped by max_tokens before the answer was complete
    ├── SourceError                    a news source could not be fetched or parsed
    └── StoreError                     the local store failed

Errors from LiteLLM, httpx and friends are translated once, at the seam
(``_backend.translate_errors``); everything above it sees only these.
"""

from __future__ import annotations

__all__ = [
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
]


class NewsdeskError(Exception):
    """Base of every error newsdesk raises on purpose. ``str(err)`` is one clear line."""


class UserError(NewsdeskError):
    """The caller's mistake; retrying will not help."""


class ConfigError(UserError):
    pass


class UnknownModelError(UserError):
    pass


class MissingAPIKeyError(UserError):
    pass


class MissingExtraError(UserError):
    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the optional extra: pip install 'newsdesk[{extra}]'")
        self.extra = extra


class ProviderError(NewsdeskError):
    """A model call failed. ``retryable`` tells the retry wrapper whether to try again."""

    retryable: bool = False

    def __init__(
        self, message: str, *, status_code: int | None = None, model: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.model = model


class ProviderTimeout(ProviderError):
    retryable = True


class RateLimited(ProviderError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    retryable = True


class BadResponse(ProviderError):
    retryable = True


class TruncatedAnswer(BadResponse):
    retryable = True


class SourceError(NewsdeskError):
    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class StoreError(NewsdeskError):
    pass
