#!/usr/bin/env bash
# Build both gateway binaries, then run every test of the workspace (unit, simulation,
# corpus replay, property, black-box, schema and interop tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# The interop and schema tests need Node 24, openclaw and upstream's schema in the cache.
# Under CI=true a failed install fails the run; elsewhere those tests skip loudly.
if ! bash scripts/interop-deps.sh >/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "test.sh: installing the interop dependencies failed" >&2
        exit 1
    fi
    echo "test.sh: WARNING: interop dependencies unavailable; interop tests will skip" >&2
fi

cargo build --workspace --bins
cargo test --workspace
