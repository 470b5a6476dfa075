#!/usr/bin/env bash
# Set up on a fresh machine if needed, then run every test (CPU; GPU-only tests skip without CUDA).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export BLENDER_USER_RESOURCES="$(mktemp -d)"
exec .venv/bin/python -m pytest -q "$@"
