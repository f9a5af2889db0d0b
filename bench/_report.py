"""Write one benchmark's figures into its own section of docs/BENCHMARKS.md.

Each bench script owns the block between ``<!-- BEGIN name -->`` and ``<!-- END name -->``;
re-running it replaces only that block, so the scripts never overwrite each other.
"""

from __future__ import annotations

import platform
import re
import sys
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEvery figure below was written by the command shown with it. Machines here are noisy: compare the ratios measured in the same run, not absolute times across runs.\n"


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, title: str, command: str, body: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    block = (
        f"<!-- BEGIN {name} -->\n## {title}\n\n"
        f"Command: `{command}`  \nRun: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}\n\n"
        f"{body.strip()}\n<!-- END {name} -->"
    )
    pattern = re.compile(
        rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote section {name!r} to {DOC}", file=sys.stderr)
