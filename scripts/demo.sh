#!/usr/bin/env bash
# Quickstart 1: set up, then run the main job (newsdesk analyze) on the bundled demo feeds with the
# embedded model — offline, no API key. Extra arguments go to `newsdesk analyze`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/newsdesk analyze "$@"
