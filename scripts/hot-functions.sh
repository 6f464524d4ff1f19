#!/bin/bash
# Regenerate host/link/hot-functions.txt: the functions `clawgate gateway run` executes while it
# starts, sits idle, takes a few handshakes and `health` calls, and shuts down, and (native pass)
# what a configured gateway runs on the benchmark's agent and channel paths: agent turns against
# a fake model, stored transcripts, Telegram, Slack and Discord through fake APIs. The release link
# (host/link, called by each binary's build.rs) places them together at the front of the code, so
# a running gateway maps a few 64 KiB windows of its binary instead of nearly all of it (lower
# resident memory).
# The list has five tiers, in that order in the binary:
# 1. what an idle gateway runs once start-up is over (from the moment it unmaps start-up's code,
#    `code_pages::release_start_up_code`: idle ticks, handshakes, `health`, `status`, stopping):
#    what stays resident at idle, packed together;
# 2. what a gateway with the agent configured and Telegram, Slack and Discord connected to fakes
#    (long polls, Socket Mode, Gateway heartbeats) runs besides, once started;
# 3. the rest of both start-ups (mapped while starting, unmapped after);
# 4. every instance of the generic functions of tiers 1-3 that have legacy names (below);
# 5. what only the agent and channel paths run.
# Names are stored with their crate disambiguators (`Cs<hash>_`) and LLVM suffixes wildcarded but
# their type arguments kept, so one line places one instance of a generic function, and still
# does after a change of a crate's dependencies moves every disambiguator; the link resolves them
# against the objects' real symbols. Legacy names (`_ZN...17h<hash>E`, this workspace's own
# crates) hash their crate and type arguments together: their hash is wildcarded where the build
# has one function of that path, kept where a generic function has several instances (those go
# stale after such a change, and tier 4 places them then). Names the list no longer matches only
# cost memory, never correctness; new code is not listed until it reruns.
#
# `scripts/hot-functions.sh --fast` (measured: 3.5-4 minutes on a 2-core machine at load 6-7 with
# the dependencies built: two release links, the callgrind scenarios once, one Telegram pass)
# redoes tiers 1-4 and keeps the paths' tier from the current list: enough after most changes.
# The full run (about 55 minutes) adds native passes:
# Needs valgrind; perf, when present, adds them. Profiles the release build itself, linked with
# its symbols (CLAWGATE_KEEP_SYMBOLS=1: same code, same names), then relinks it stripped:
# 1. under callgrind, which sees every function that runs (but takes the portable path where
#    the CPU has SHA or AVX extensions);
# 2. natively, relinked with the list so far, recording the page faults that fetch code: any
#    fault outside `.text.hot` names a function the list missed; repeated until none is left
#    (a fault maps a whole 64 KiB window, so each pass may uncover the next miss).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "hot-functions.sh: valgrind is needed" >&2; exit 1; }
fast=0
case ${1-} in
--fast) fast=1 ;;
"") ;;
*) echo "usage: scripts/hot-functions.sh [--fast]" >&2 && exit 2 ;;
esac

out=host/link/hot-functions.txt
bin=target/release/clawgate
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
token=hot-functions-token
# A configured gateway as the benchmark runs it (discovery off).
configured='{"gateway":{"tickIntervalMs":2000,"maxConnections":20000,"nodes":{"commands":{"allow":["bench.echo"]}}}}'

# Symbol names (standard input) as the list's globs, ending in `*`, LLVM's suffix left out.
# v0 names (`_R`) spell their type arguments: their crate disambiguators are wildcarded. A
# legacy name (`_ZN`) carries one hash for its crate and its type arguments alike: wildcarded
# when this build ($work/code) has one function of that path, kept when it has several (the
# instances of a generic function, which the wildcard would all place). With `generic`, only
# those several, wildcarded: the fallback tier that places them after a change.
as_globs() {
    awk -v code="$work/code" -v mode="${1-place}" '
        function bare(n) { sub(/\.(llvm\.)?[0-9]+$/, "", n); return n }
        function legacy(n) { return n ~ /^_ZN/ && substr(n, length(n) - 19, 3) == "17h" && substr(n, length(n)) == "E" }
        function path(n) { return substr(n, 1, length(n) - 20) }
        BEGIN {
            while ((getline line < code) > 0) {
                split(line, f, " "); n = bare(f[2])
                if (legacy(n) && !(n in seen)) { seen[n] = 1; paths[path(n)]++ }
            }
        }
        {
            n = bare($0)
            if (legacy(n)) {
                several = paths[path(n)] > 1
                if (mode == "generic") { if (several) print path(n) "17h*E*" }
                else print (several ? n : path(n) "17h*E") "*"
            } else if (mode != "generic") {
                gsub(/Cs[0-9A-Za-z][0-9A-Za-z][0-9A-Za-z][0-9A-Za-z][0-9A-Za-z][0-9A-Za-z]*_/, "Cs*_", n)
                print n "*"
            }
        }'
}


# Run `[PREFIX...] clawgate gateway run ARGS...` (environment from the caller; PREFIX is a
# profiler command line, ended by `--`, in which `{n}` stands for the run's number) in a fresh
# state directory (with CONFIG as its openclaw.json when given), wait for its port, call LOAD
# (a shell function) and stop it.
runs=0
serve() {
    local config=$1 load=$2 state="$work/state" prefix=()
    shift 2
    runs=$((runs + 1))
    while [ "$1" != -- ]; do prefix+=("${1//\{n\}/$runs}"); shift; done
    shift
    rm -rf "$state" && mkdir -p "$state"
    [ -z "$config" ] || printf '%s\n' "$config" >"$state/openclaw.json"
    OPENCLAW_STATE_DIR="$state" HOME="$state" \
        "${prefix[@]}" "$bin" gateway run --port "$port" "$@" >"$work/gateway.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    sleep 2 # idle: ticks, timers, log flushes
    "$load"
    kill -TERM "$pid"
    wait "$pid" || true
}

no_load() { :; }

# A few handshakes from the benchmark's client, then `health` and `status` from the CLI.
client_load() {
    target/release/clawgate-bench load --port "$port" --concurrency 1 --handshakes 20 >/dev/null
    for method in health status; do
        target/release/clawgate gateway call "$method" --url "ws://127.0.0.1:$port" \
            --token "$token" --json >/dev/null
    done
}

# Both scenarios (no configuration at all, the README's first command; then the benchmark's
# configuration under load) under PREFIX..., twice (once with --fast), as a signal lands at a
# different point each time.
scenarios() {
    for _ in $(seq $((2 - fast))); do
        serve "" no_load "$@" --
        OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP=1000 \
            serve "$configured" client_load "$@" -- --token "$token"
    done
}

# $work/ran: the functions named in $work/called (callgrind's) with their ICF aliases.
with_icf_aliases() {
    awk 'NR == FNR { called[$1] = 1; next }
         { at[$2] = $1; names[$1] = names[$1] " " $2 }
         END { for (n in called) if (n in at) { k = split(names[at[n]], a, " "); for (i = 1; i <= k; i++) print a[i] } }' \
        "$work/called" "$work/code" | sort -u >"$work/ran"
}

# The functions named in callgrind's FILES as globs, with their ICF aliases, appended to TIER.
called_in() {
    local tier=$1
    shift
    cat "$@" | grep -oE '^c?fn=\([0-9]+\) .+' | sed -E 's/^c?fn=\([0-9]+\) //' |
        sort -u >"$work/called"
    with_icf_aliases
    as_globs <"$work/ran" >>"$work/$tier"
    as_globs generic <"$work/ran" >>"$work/tier.generic"
}

# The functions of callgrind's runs $work/NAME.*.out*: what ran after start-up's code was
# unmapped to STEADY, the rest to tier.start. `--icf=all` keeps one copy of identical
# functions and callgrind reports it under one of their names, which need not be the copy the
# linker keeps: every name at a ran function's address goes with it.
sort_runs() {
    local name=$1 steady=$2
    nm "$bin" | awk '$2 ~ /^[tTwW]$/ {print $1, $3}' >"$work/code"
    ls "$work/$name".*.out.* >/dev/null 2>&1 ||
        echo "hot-functions.sh: no run unmapped start-up's code: tier 1 holds start-up too" >&2
    called_in "$steady" "$work/$name".*.out
    called_in tier.start "$work/$name".*.out*
}

# Callgrind over both scenarios: tier 1, and tier 3's start-ups.
callgrind_pass() {
    scenarios "${callgrind[@]}" --callgrind-out-file="$work/cg.{n}.out"
    sort_runs cg tier.steady
}

# Callgrind over a gateway with the agent configured (its model never called) and Telegram,
# Slack and Discord connected to fakes with nothing to say (`tests/examples/idle_channels.rs`:
# long polls held, a Discord heartbeat every 2 s), idle after a handshake: what it ran besides
# the first tier is the second, so a heartbeat or a long poll maps no code window of its own.
polling_pass() {
    local fakes="$work/fakes" api slack discord
    mkdir -p "$fakes"
    target/release/examples/idle_channels "$fakes" 2000 &
    api=$!
    for _ in $(seq 100); do
        [ -s "$fakes/env" ] && break
        sleep 0.1
    done
    [ -s "$fakes/env" ] || { echo "hot-functions.sh: the channel fakes did not start" >&2; exit 1; }
    slack=$(sed -n 's/^SLACK_API_URL=//p' "$fakes/env")
    discord=$(sed -n 's/^DISCORD_API_URL=//p' "$fakes/env")
    SLACK_API_URL="$slack" DISCORD_API_URL="$discord" OPENCLAW_DISABLE_BONJOUR=1 \
        serve "$(cat "$fakes/openclaw.json")" health_load "${callgrind[@]}" \
        --callgrind-out-file="$work/polling.{n}.out" -- --token "$token"
    kill "$api"
    sort_runs polling tier.polling
}

# One handshake and `health` from the CLI, then the long poll's time to settle.
health_load() {
    target/release/clawgate gateway health --url "ws://127.0.0.1:$port" --token "$token" >/dev/null
    sleep 3
}

# The benchmark's agent and channel paths (`clawgate-bench paths`, clawgate only) with every
# gateway it starts recorded by `perf record -p`, attached from outside the gateway's process
# tree: the benchmark ends each gateway with SIGKILL, which a recording perf would not survive,
# whereas an attached one sees its target exit and writes its file whole.
paths_load() {
    mkdir -p "$work/paths"
    cat >"$work/paths/clawgate" <<WRAP
#!/bin/bash
(setsid perf record -q -e page-faults -c 1 -d -p \$\$ -o "$work/pf.paths.\$\$.data" >/dev/null 2>&1 &) # not a child: the benchmark kills its gateway's process tree
sleep 1 # perf attached before the gateway starts
exec "$(realpath "$bin")" "\$@"
WRAP
    chmod +x "$work/paths/clawgate"
    target/release/clawgate-bench paths --quick --only mio --no-build --bin-dir "$work/paths" \
        --out "$work/paths.md" >/dev/null 2>&1 || echo "hot-functions.sh: the paths run failed" >&2
    sleep 1 # the last perf writes its file
}

# Rust functions whose code a native run faulted in although the list does not name them, each
# as `TIER NAME`: `idle` for a fault in the scenarios (checked against tiers 1-3), `paths` for one
# on the agent and channel paths (checked against every tier).
native_misses() {
    local data tier name glob listed
    local -a idle_globs all_globs globs
    rm -f "$work"/pf.*.data
    scenarios perf record -q -e page-faults -c 1 -d -o "$work/pf.{n}.data"
    paths_load
    mapfile -t idle_globs < <(sort -u "$work/tier.steady" "$work/tier.polling" "$work/tier.start")
    mapfile -t all_globs < <(cd "$work" && sort -u tier.steady tier.polling tier.start tier.paths)
    # Columns: fault address, its symbol, its object, instruction pointer: a code fetch faults
    # at its own instruction pointer.
    for data in "$work"/pf.*.data; do
        case $data in *pf.paths.*) tier=paths ;; *) tier=idle ;; esac
        perf script -i "$data" -F addr,sym,dso,ip --no-demangle 2>/dev/null |
            awk -v obj="($(realpath "$bin"))" -v tier="$tier" '$1 == $4 && $3 == obj { print tier, $2 }'
    done | sort -u |
        while read -r tier name; do
            [[ $name == _R* || $name == _ZN* ]] || continue # crt start-up code stays put
            if [ "$tier" = idle ]; then globs=("${idle_globs[@]}"); else globs=("${all_globs[@]}"); fi
            listed=0
            for glob in "${globs[@]}"; do
                # shellcheck disable=SC2053 # the list holds globs
                if [[ $name == $glob ]]; then listed=1 && break; fi
            done
            [ "$listed" = 1 ] || echo "$tier $name"
        done
}

# The lines of tier file $1 that no tier file after it (the rest) holds.
only_in() {
    local first=$1
    shift
    sort -u "$work/$first" | comm -23 - <(cd "$work" && sort -u "$@" /dev/null)
}

write_list() {
    {
        echo "# Generated by scripts/hot-functions.sh; one glob per line (see host/link/src/lib.rs)."
        echo "# Tier 1: what an idle gateway runs once started (idle, handshakes, health, status, stop)."
        sort -u "$work/tier.steady"
        echo "# Tier 2: what Telegram, Slack and Discord connected with the agent configured add once started."
        only_in tier.polling tier.steady
        echo "# Tier 3: the rest of both start-ups."
        only_in tier.start tier.steady tier.polling
        echo "# Tier 4: the generic functions of tiers 1-3 with legacy names, every instance (places them after a change)."
        only_in tier.generic tier.steady tier.polling tier.start
        echo "# Tier 5: what only the agent and channel paths add."
        only_in tier.paths tier.steady tier.polling tier.start tier.generic
    } >"$out"
}

CLAWGATE_KEEP_SYMBOLS=1 cargo build -q --release -p clawgate
cargo build -q --release -p clawgate-bench
cargo build -q --release -p clawgate-tests --example idle_channels
# Callgrind dumps its costs so far when the function that unmaps start-up's code returns, so
# each run's last file holds what an idle gateway runs once started, its first what ran before.
start_up_end=$(nm "$bin" | awk '/13clawgate_host10code_pages21release_start_up_code/ && !n++ { print $3 }')
[ -n "$start_up_end" ] || { echo "hot-functions.sh: no release_start_up_code in $bin" >&2; exit 1; }
callgrind=(valgrind -q --tool=callgrind --demangle=no --dump-after="$start_up_end")
# What callgrind cannot see: it runs the portable SHA-256, SHA-512 (device signatures) and SHA-1
# (the WebSocket accept key) where the CPU has SHA or AVX2 extensions.
touch "$work/tier.polling" "$work/tier.start" "$work/tier.generic" "$work/tier.paths"
cat >"$work/tier.steady" <<'NATIVE'
_ZN4sha26sha2563x86*
_ZN4sha26sha5123x86*
_ZN4sha18compress7x86_sha*
_RNvNtNtNtCs*_4core9core_arch3x863sha*
_ZN4core9core_arch3x865ssse3*
NATIVE
# --fast: the paths' tier as the current list has it.
[ "$fast" = 0 ] || sed -n '/^# Tier [0-9]*: what only the agent/,$ { /^#/!p }' "$out" >"$work/tier.paths"
callgrind_pass
polling_pass
write_list
if [ "$fast" = 1 ]; then
    : # the native passes are the slow part
elif command -v perf >/dev/null && perf stat -e page-faults true >/dev/null 2>&1; then
    for pass in 1 2 3 4 5 6 7 8; do
        CLAWGATE_KEEP_SYMBOLS=1 cargo build -q --release -p clawgate # linked with the list so far
        native_misses >"$work/missed"
        echo "hot-functions.sh: native pass $pass: $(wc -l <"$work/missed") function(s) missed"
        sed 's/^/    /' "$work/missed"
        [ -s "$work/missed" ] || break
        sed -n 's/^idle //p' "$work/missed" | as_globs >>"$work/tier.steady"
        sed -n 's/^idle //p' "$work/missed" | as_globs generic >>"$work/tier.generic"
        sed -n 's/^paths //p' "$work/missed" | as_globs generic >>"$work/tier.paths"
        sed -n 's/^paths //p' "$work/missed" | as_globs >>"$work/tier.paths"
        write_list
    done
else
    echo "hot-functions.sh: perf cannot count page faults here; callgrind's list only" >&2
fi
cargo build -q --release -p clawgate # stripped again, with the new list
echo "hot-functions.sh: $(grep -vc '^#' "$out") functions in $out"
