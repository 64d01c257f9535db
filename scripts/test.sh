#!/usr/bin/env bash
# The project's test command (README, .ci/run): set up .venv if needed, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
