#!/usr/bin/env bash
# Set up a virtual environment with the dev tools and run the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

# The console's browser tests drive the distribution's headless Chromium (never a browser
# download at run time). Install it from the Debian packages when it is missing.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "installing chromium and chromium-driver (Debian packages) for the browser tests" >&2
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q chromium chromium-driver >/dev/null \
            || echo "warning: could not install chromium; browser tests will fail or skip" >&2
    else
        echo "warning: chromium/chromedriver missing (apt-get install chromium chromium-driver)" >&2
    fi
fi

# The suite runs every store test on PostgreSQL too ($RELAYBOX_TEST_PG_URL, default the local
# server). Start the local cluster if it is installed but down.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start \
            || echo "warning: could not start PostgreSQL; its tests will fail or skip" >&2
    fi
fi

exec .venv/bin/python -m pytest "$@"
