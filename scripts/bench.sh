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
exec cargo run --release -p clawgate-bench -- all "$@"
