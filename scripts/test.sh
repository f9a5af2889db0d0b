#!/usr/bin/env bash
# Quickstart 2: set up everything the tests need (venv, extras, redis-server, chromium), then run
# the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export GRADIO_ANALYTICS_ENABLED=False LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1
# Lint and types first: cheap, and a failure here is a real defect.
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
set +e
.venv/bin/python -m pytest -q "$@"
code=$?
set -e
# pytest's 5 means "no tests collected": that is a failure here, not a pass.
exit $code
