"""What every bench script sets up before it imports newsdesk, in one place.

A script runs as ``python bench/NAME.py``, so the checkout is not importable yet; it starts with::

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench._env import ROOT  # noqa: E402 - before newsdesk is imported

Importing this module puts the checkout's ``src/`` (this tree's newsdesk, not the installed one)
and its root (``bench``, ``tests.servers``) first on ``sys.path``; sets the defaults a bench
wants (LiteLLM's bundled price map instead of a download at import, no proxy for 127.0.0.1, the
Hugging Face hub offline); and gives the process a new, empty ``NEWSDESK_HOME``, inherited by the
processes it starts unless they are given their own: nothing a bench does reads or writes a real
cache or store.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

for _path in (ROOT, ROOT / "src"):  # src/ ends up first
    if str(_path) in sys.path:
        sys.path.remove(str(_path))
    sys.path.insert(0, str(_path))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["NEWSDESK_HOME"] = tempfile.mkdtemp(prefix="newsdesk-bench-")
