"""Where newsdesk keeps things, and the defaults a user can override with env vars.

``NEWSDESK_HOME`` moves every directory at once (tests use it so they never touch a real home).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "local/smollm2"


def _home() -> Path | None:
    home = os.environ.get("NEWSDESK_HOME")
    return Path(home).expanduser() if home else None


def cache_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("newsdesk"))


def data_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir("newsdesk"))


def default_model() -> str:
    return os.environ.get("NEWSDESK_MODEL", DEFAULT_MODEL)
