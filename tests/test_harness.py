"""The test harness itself: every test runs in its own home, and the shared helpers do what the
tests that use them rely on."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from tests.helpers import CLEARED_ENV, NEWSDESK, TEST_KEY, free_port, run_cli

# Read at import, before any fixture ran: the home of whoever runs the suite.
REAL_HOME = os.environ.get("HOME")
_seen_homes: list[Path] = []


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_gets_its_own_empty_home(home: Path, attempt: int) -> None:
    assert os.environ["NEWSDESK_HOME"] == str(home) and home.is_dir()
    assert not any(home.iterdir()), "a home left over from another test"
    assert home not in _seen_homes
    _seen_homes.append(home)
    (home / "marker").write_text(str(attempt))


def test_nothing_points_at_the_real_home(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import platformdirs

    from newsdesk._config import cache_dir, data_dir

    base = tmp_path_factory.getbasetemp()
    user = Path.home()
    assert str(user) != REAL_HOME and user.is_relative_to(base)
    for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        assert Path(os.environ[var]).is_relative_to(user), var
    # newsdesk's own directories, and where they would fall back to without NEWSDESK_HOME
    assert cache_dir().is_relative_to(home) and data_dir().is_relative_to(home)
    assert Path(platformdirs.user_cache_dir("newsdesk")).is_relative_to(user)
    assert Path(platformdirs.user_data_dir("newsdesk")).is_relative_to(user)
    assert not [var for var in CLEARED_ENV if var in os.environ]
    assert os.environ["OPENAI_API_KEY"] == TEST_KEY


def test_free_port_is_free() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing holds it
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_run_cli_runs_the_script_beside_the_interpreter_in_the_tests_home(home: Path) -> None:
    assert NEWSDESK.parent == Path(sys.executable).parent and NEWSDESK.is_file()
    done = run_cli("history", COLUMNS="150")
    assert done.returncode == 0, done.stderr
    assert (home / "data" / "newsdesk.db").is_file(), "the CLI did not use this test's home"
