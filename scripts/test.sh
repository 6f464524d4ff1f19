#!/usr/bin/env bash
# Build both gateway binaries, then run every test of the workspace against them.
#
#   scripts/test.sh                         # debug build, all tests
#   scripts/test.sh --release               # release binaries (CLAWGATE_TEST_PROFILE=release)
#   scripts/test.sh -- smol_shell           # extra arguments go to `cargo test --workspace`
#
# The black-box suite (tests/) starts the binaries from the target directory (CARGO_TARGET_DIR,
# else ./target); it does not build them itself, so run this script rather than `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
build_args=()
seen_dashes=0
prev=""
for arg in "$@"; do
    if [[ $seen_dashes == 0 ]]; then
        case "$arg" in
            --) seen_dashes=1 ;;
            --release) profile=release; build_args+=("$arg") ;;
            --profile=*) profile="${arg#--profile=}"; build_args+=("$arg") ;;
            --locked | --offline | --frozen) build_args+=("$arg") ;;
        esac
        case "$prev" in
            --profile) profile="$arg"; build_args+=("--profile" "$arg") ;;
        esac
    fi
    prev="$arg"
done
[[ $profile == dev ]] && profile=debug

# The interop and schema tests need Node 24, openclaw and upstream's schema in the cache
# (installed the first time). Under CI=true a failed install fails the run; elsewhere those
# tests skip with a loud message.
if ! bash scripts/interop-deps.sh >/dev/null; then
    [[ ${CI:-} == true ]] && { echo "test.sh: installing the interop dependencies failed" >&2; exit 1; }
    echo "test.sh: WARNING: interop dependencies unavailable; interop tests will skip" >&2
fi

cargo build --workspace --bins "${build_args[@]}"
CLAWGATE_TEST_PROFILE="$profile" cargo test --workspace "$@"
