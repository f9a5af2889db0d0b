"""Redis URLs may carry a password (``redis://:secret@host``): it goes to Redis and nowhere else —
not into output, logs, errors or the store."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from newsdesk._exceptions import ConfigError

SCHEMES = ("redis", "rediss", "unix")


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (user name, host, port and db kept). Works
    on text, not a parse, so even a malformed URL never comes out with its password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" not in netloc:
        return url
    userinfo, _, hostport = netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    # "redis://secret@host": some clients read a lone user part as the password: hide it too.
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}://{shown}@{hostport}{slash}{tail}"


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with the URL's password removed wherever it appears."""
    password = _password(url)
    for secret in {password, unquote(password) if password else None}:
        if secret:
            text = text.replace(secret, "***")
    return text.replace(url, redact_url(url))


def check_redis_url(url: str, what: str = "queue") -> str:
    """A usable ``redis://`` / ``rediss://`` / ``unix://`` URL, or a ConfigError that does not echo the password."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigError(
            f"bad {what} URL {redact_url(url)}: {redact_text(str(exc), url)}"
        ) from None
    if parts.scheme not in SCHEMES or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError(f"bad {what} URL {redact_url(url)}: use redis://[:password@]HOST:PORT/DB")
    return url
