#!/usr/bin/env bash
# Set up newsdesk in ./.venv (idempotent). With --test, also the Debian packages the tests need.
# llama-cpp-python builds from source the first time (~5 min on 2 cores); pip's wheel cache keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$want_test" = 1 ]; then
  need=()
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.newsdesk-installed
extras="all"
[ "$want_test" = 1 ] && extras="all,test"
# Reinstall when pyproject.toml changed or the extras asked for grew.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! grep -qx "$extras" "$stamp"; then
  echo "setup: installing newsdesk[$extras] into .venv (the first time builds llama-cpp-python: ~5-10 min)" >&2
  log=.venv/setup.log
  t0=$(date +%s)
  # pip's and the build backends' own chatter (deprecation notices of build dependencies) goes to a
  # log file; a failure shows its last lines.
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[$extras]"; } >"$log" 2>&1; then
    echo "setup: installation failed; the last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "setup: installed in $(( $(date +%s) - t0 )) s (details in $log)" >&2
  echo "$extras" > "$stamp"
fi
