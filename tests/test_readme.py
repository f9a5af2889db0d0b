"""The README's Python examples run as written (against the local test provider, not the internet)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.servers.plugin import OpenAIServerHandle

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _run(code: str, server: OpenAIServerHandle, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "NEWSDESK_HOME": str(tmp_path),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        # LiteLLM reads these for openai/ models: the examples' provider becomes the test server.
        "OPENAI_API_BASE": server.url,
        "OPENAI_API_KEY": "sk-test",
        "NEWSDESK_MODEL": "openai/test-model",
    }
    if os.environ.get("PYTHONPATH"):  # a source checkout under test (a worktree) stays the one run
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    # Harness only: a hang prints every thread's stack instead of timing out silently.
    code = "import faulthandler; faulthandler.dump_traceback_later(80, exit=True)\n" + code
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_readme_has_the_examples() -> None:
    blocks = _python_blocks()
    assert any("LiteLLMClient(req)" in b for b in blocks)
    assert any("gateway.map(" in b for b in blocks)
    assert any("NewsDesk(" in b for b in blocks)


def test_streaming_snippet_runs_as_written(
    openai_server: OpenAIServerHandle, tmp_path: Path
) -> None:
    code = next(b for b in _python_blocks() if "stream_response()" in b)
    # the only change: the provider (OpenRouter needs the internet and a key)
    code = code.replace('"openrouter/openai/gpt-4o-mini"', '"openai/test-model"')
    done = _run(code, openai_server, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "the snippet printed nothing"
    assert openai_server.stats()["calls"] >= 1


def test_batch_snippet_runs_as_written(openai_server: OpenAIServerHandle, tmp_path: Path) -> None:
    code = next(b for b in _python_blocks() if "gateway.map(" in b)
    # Redis is not running on that port here: the cache must fail open, not fail the batch.
    code = code.replace("redis://127.0.0.1:6379/0", "redis://127.0.0.1:1/0")
    done = _run(code, openai_server, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len([ln for ln in lines if re.match(r"\d+ ", ln)]) == 100
    assert "failed" not in done.stdout
    assert lines[-1].startswith("wall ")


def test_testing_snippet_runs_as_written(openai_server: OpenAIServerHandle, tmp_path: Path) -> None:
    code = next(b for b in _python_blocks() if "FunctionBackend" in b)
    done = _run(code, openai_server, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Echo: hi"
    assert openai_server.stats()["calls"] == 0  # no provider was asked


def test_news_api_snippet_runs_as_written(
    openai_server: OpenAIServerHandle, tmp_path: Path
) -> None:
    code = next(b for b in _python_blocks() if "NewsDesk(" in b)
    done = _run(code, openai_server, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert "5 analyzed in " in done.stdout, done.stdout
    # the demo's deliberately broken feed is reported, and the run goes on
    assert any(line.startswith("source failed: Broken Wire") for line in lines), done.stdout
    after = next(i for i, ln in enumerate(lines) if " analyzed in " in ln)
    assert len(lines[after + 1 : -1]) == 3  # the stored analyses, searched
    assert lines[-1] == "['finished']"
    assert openai_server.stats()["calls"] >= 5
