#!/usr/bin/env bash
# BENCHMARKS.md's hostile-load table: the black-box hostile suite (tests/tests/blackbox/hostile.rs)
# against release builds of both shells, one attack at a time; each attack prints its row
# (RSS idle / peak / after in MiB, from /proc/<pid>/status sampled every 5 ms). Prints the table
# and the load average before and after, to say how loaded the machine was.
#
#   scripts/hostile-table.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p clawgate -p clawgate-smol
cargo test -p clawgate-tests --test blackbox --no-run
before=$(cut -d' ' -f1-3 /proc/loadavg)
# The churn comparison of the shells repeats the churn rows: skipped here.
if ! out=$(CLAWGATE_TEST_PROFILE=release cargo test -p clawgate-tests --test blackbox hostile:: \
    -- --nocapture --test-threads=1 --skip churn_fds_of_smol 2>&1); then
    echo "$out" | tail -60
    exit 1
fi
echo "| attack | shell | RSS idle (MiB) | peak | after | note |"
echo "|---|---|---|---|---|---|"
grep '^| ' <<<"$out" | sort -s -t'|' -k2,2
echo
echo "load average (1, 5, 15 min) before: $before; after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
