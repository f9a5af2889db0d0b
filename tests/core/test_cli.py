"""The ``newsdesk`` command: ask (one streams, several run at once), chat, errors, start-up cost."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from newsdesk.cli._app import app
from tests.helpers import cli_env as subprocess_env
from tests.helpers import run_cli
from tests.servers.plugin import OpenAIServerHandle

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    return {"OPENAI_API_KEY": "sk-test", "NEWSDESK_HOME": os.environ["NEWSDESK_HOME"]}


def test_ask_one_prompt_streams(openai_server: OpenAIServerHandle, cli_env: dict[str, str]) -> None:
    result = runner.invoke(
        app,
        ["ask", "hello there", "--model", "openai/x", "--api-base", openai_server.url],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output + str(result.exception)
    assert result.stdout.strip() == "Echo: hello there"
    assert "openai/x" in result.stderr and "s" in result.stderr  # model · tokens · time
    sent = openai_server.last_request()
    assert sent["stream"] is True
    assert sent["_api_key_sha256"] == openai_server.key_sha256("sk-test")
    # asked again: the answer comes from the (disk) cache, still printed as a stream
    again = runner.invoke(
        app,
        ["ask", "hello there", "--model", "openai/x", "--api-base", openai_server.url],
        env=cli_env,
    )
    assert again.exit_code == 0 and again.stdout.strip() == "Echo: hello there"
    assert "from cache" in again.stderr
    assert openai_server.stats()["calls"] == 1


def test_ask_several_prompts_prints_each_and_a_timing_table(
    openai_server: OpenAIServerHandle, cli_env: dict[str, str]
) -> None:
    # Every prompt waits long enough at the provider that all three overlap even when the
    # process starts them far apart on a loaded machine (0.3 / 0.1 / 0 s once saw only 2).
    prompts = ["[[latency:1.6]] alpha", "[[latency:1.3]] beta", "[[latency:1.0]] gamma"]
    result = runner.invoke(
        app,
        [
            "ask",
            *prompts,
            "--model",
            "openai/x",
            "--api-base",
            openai_server.url,
            "--cache",
            "off",
            "-c",
            "3",
        ],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output + str(result.exception)
    out = result.stdout
    for word in ("alpha", "beta", "gamma"):
        assert f"Echo:  {word}" in out or f"Echo: {word}" in out
    # completion order: gamma (shortest latency) before beta before alpha
    assert out.index("gamma") < out.index("beta") < out.index("alpha")
    err = result.stderr
    assert "Timing" in err and "3 (3 ok, 0 failed)" in err
    for row in (
        "total (wall)",
        "sum of individual times",
        "time saved by concurrency",
        "cache hits / misses",
    ):
        assert row in err
    assert openai_server.stats()["max_in_flight"] == 3


def test_ask_several_with_a_failure_keeps_going(
    openai_server: OpenAIServerHandle, cli_env: dict[str, str]
) -> None:
    result = runner.invoke(
        app,
        [
            "ask",
            "fine",
            "[[status:500]] broken",
            "--model",
            "openai/x",
            "--api-base",
            openai_server.url,
            "--cache",
            "off",
            "--retries",
            "0",
        ],
        env=cli_env,
    )
    assert result.exit_code == 0
    assert "Echo: fine" in result.stdout and "failed" in result.stdout
    assert "2 (1 ok, 1 failed)" in result.stderr


def test_bad_flags_are_usage_errors(cli_env: dict[str, str]) -> None:
    for args in (
        ["ask", "x", "--concurrency", "0"],
        ["ask", "x", "--no-such-flag"],
        ["ask", "x", "--temperature", "9"],
        ["ask"],
    ):
        result = runner.invoke(app, args, env=cli_env)
        assert result.exit_code == 2, (args, result.output)
        assert "Usage" in result.output or "Usage" in result.stderr
        assert "Traceback" not in result.output


def test_chat_keeps_history(openai_server: OpenAIServerHandle, cli_env: dict[str, str]) -> None:
    result = runner.invoke(
        app,
        ["chat", "--model", "openai/x", "--api-base", openai_server.url, "--system", "be kind"],
        input="first question\nsecond question\n",
        env=cli_env,
    )
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "Echo: first question" in result.stdout and "Echo: second question" in result.stdout
    requests = openai_server.stats()["last_requests"]
    assert len(requests) == 2
    second = [(m["role"], m["content"]) for m in requests[1]["messages"]]
    assert second == [
        ("system", "be kind"),
        ("user", "first question"),
        ("assistant", "Echo: first question"),
        ("user", "second question"),
    ]


def test_chat_reset_clears_history(
    openai_server: OpenAIServerHandle, cli_env: dict[str, str]
) -> None:
    result = runner.invoke(
        app,
        ["chat", "--model", "openai/x", "--api-base", openai_server.url],
        input="one\n/reset\ntwo\n/exit\nnever sent\n",
        env=cli_env,
    )
    assert result.exit_code == 0
    requests = openai_server.stats()["last_requests"]
    assert [[m["content"] for m in r["messages"]] for r in requests] == [["one"], ["two"]]


def _main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    from newsdesk.cli import main

    monkeypatch.setattr(sys, "argv", ["newsdesk", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_main_unknown_model_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _main(monkeypatch, capsys, "ask", "hi", "--model", "nosuchprovider/some-model")
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "unknown model" in err
    assert "Traceback" not in out + err


def test_main_missing_key_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, err = _main(monkeypatch, capsys, "ask", "hi", "--model", "openai/gpt-4o-mini")
    assert code == 2
    assert err.startswith("error: ") and "OPENAI_API_KEY" in err and err.count("\n") == 1


def test_main_unreachable_server_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code, _, err = _main(
        monkeypatch,
        capsys,
        "ask",
        "hi",
        "--model",
        "openai/x",
        "--api-base",
        f"http://127.0.0.1:{closed_port}/v1",
        "--retries",
        "0",
        "--cache",
        "off",
    )
    assert code == 1
    assert "error: " in err and "unavailable" in err and "Traceback" not in err


def test_entry_point_subprocess_user_error() -> None:
    """The installed ``newsdesk`` script: a user error is one line on stderr, exit code 2."""
    bad = run_cli("ask", "hi", "--model", "nosuchprovider/x", timeout=120, NO_COLOR="1")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: unknown model") and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stdout + bad.stderr


def test_help_is_fast_and_does_not_import_litellm() -> None:
    env = subprocess_env(NO_COLOR="1")
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import newsdesk.cli._app, sys; assert 'litellm' not in sys.modules, 'litellm imported'",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        done = run_cli("--help", timeout=60, NO_COLOR="1")
        times.append(time.perf_counter() - t0)
        assert done.returncode == 0 and "ask" in done.stdout and "chat" in done.stdout
    assert statistics.median(times) < 1.5, times
