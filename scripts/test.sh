#!/usr/bin/env bash
# The project's test command (README, and CI after installing): lint, type-check, tests.
# W&B never goes online from the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
echo "== ruff" && ruff check . || exit 1
echo "== mypy" && mypy && mypy scripts || exit 1
echo "== pytest"
WANDB_MODE=disabled WANDB_SILENT=true python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests (exit code 5): treated as a failure of the test command" >&2
    exit 1
fi
exit "$rc"
