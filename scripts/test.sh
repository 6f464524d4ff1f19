#!/usr/bin/env bash
# Build both gateway binaries as shipped, then run every test of the workspace against them.
#
#   scripts/test.sh                         # debug build, all tests
#   scripts/test.sh --release               # release binaries (CLAWGATE_TEST_PROFILE=release)
#   scripts/test.sh -- smol_shell           # extra arguments go to `cargo test --workspace`
#
# The black-box suite (tests/) starts the binaries from CLAWGATE_TEST_BIN_DIR, which this
# script sets; it does not build them itself, so run this script rather than `cargo test`.
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

# The binaries as shipped: built as their own packages (the workspace's default members, as a
# bare `cargo build --release` and the bench build them), so their dependencies' features are
# theirs. Built with the workspace, the test crates' dependencies switch on serde_json's
# `float_roundtrip` and more in the gateway too, and `cargo test --workspace` builds the shells
# so (for their own tests) into the same place: the shipped ones are copied aside first and the
# suite starts those. Only the crates whose features differ are built twice, not their
# dependencies (SQLite, ring) that are the same in both.
cargo build -p clawgate -p clawgate-smol "${build_args[@]}"
# Absolute: the tests run in their own package's directory.
target="$(realpath "${CARGO_TARGET_DIR:-target}")"
shipped="$target/$profile/shipped"
mkdir -p "$shipped"
cp -f "$target/$profile/clawgate" "$target/$profile/clawgate-smol" "$shipped/"
CLAWGATE_TEST_PROFILE="$profile" CLAWGATE_TEST_BIN_DIR="$shipped" cargo test --workspace "$@"
