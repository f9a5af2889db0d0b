"""``newsdesk agent``: one real run on the embedded model, and scripted runs on the test server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from newsdesk.cli._app import app
from tests.agents.demo_store import populate
from tests.helpers import run_cli
from tests.servers.plugin import OpenAIServerHandle


@pytest.mark.slow
def test_embedded_model_answers_through_the_cli(home: Path) -> None:
    populate()
    proc = run_cli(
        "agent", "What happened in Harbor City?", "--max-steps", "3", "--max-tokens", "96",
        timeout=240, COLUMNS="200",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "no answer on stdout"
    assert (
        "Harbor City" in proc.stdout
    )  # the answer ends with the stored lines it found (or is built from them)
    assert "step 1" in proc.stderr and "→ search_news(" in proc.stderr


def test_jsonl_events_against_the_test_server(
    openai_server: OpenAIServerHandle, home: Path
) -> None:
    populate()
    reply = json.dumps({"name": "final_answer", "arguments": {"answer": "Nothing new."}})
    result = CliRunner().invoke(
        app,
        [
            "agent",
            f"anything new? [[reply:{reply}]]",
            "--model",
            "openai/test-model",
            "--api-base",
            openai_server.url,
            "--jsonl",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    kinds = [e["kind"] for e in events]
    assert kinds == ["tool_call", "tool_result", "step", "final"]
    assert events[0]["tool"] == "final_answer" and events[-1]["text"] == "Nothing new."
    assert events[2]["step"] == 1 and "duration" in events[2]


def test_rich_view_against_the_test_server(openai_server: OpenAIServerHandle, home: Path) -> None:
    populate()
    reply = json.dumps({"name": "search_news", "arguments": {"query": "Mariners"}})
    result = CliRunner().invoke(
        app,
        [
            "agent",
            f"cup final? [[reply:{reply}]]",
            "--model",
            "openai/test-model",
            "--api-base",
            openai_server.url,
            "--max-steps",
            "1",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out: Any = result.stderr
    assert "→ search_news(query='Mariners')" in out and "Harbor City Mariners" in out
    assert "step 1" in out and "answer:" in out
    assert result.stdout.strip()


def test_provider_failure_exits_1(openai_server: OpenAIServerHandle, home: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "agent",
            "anything [[status:400]]",
            "--model",
            "openai/test-model",
            "--api-base",
            openai_server.url,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert "error:" in result.stderr
