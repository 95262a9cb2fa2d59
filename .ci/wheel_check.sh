#!/usr/bin/env bash
# Build the wheel and import every registered generator from a fresh venv that has only the wheel (no source tree).
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/pip wheel --no-deps -q -w "$work/dist" .
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q torch==2.13.0 "$work"/dist/foscu_bench-*.whl
(cd "$work" && "$work/venv/bin/python" "$OLDPWD/.ci/wheel_check.py")
