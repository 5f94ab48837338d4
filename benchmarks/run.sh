#!/usr/bin/env bash
# The benchmark suite, from a fresh clone: bash benchmarks/run.sh [--runs N] [--only a,b]
# Needs PostgreSQL at $RELAYBOX_BENCH_PG_URL (default postgresql://postgres@127.0.0.1:5432/test).
# Installs relaybox into .venv if missing; the peer queues go into benchmarks/.peer-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q -e .
fi
exec .venv/bin/python -m benchmarks "$@"
