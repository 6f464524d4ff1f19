#!/usr/bin/env bash
# Cross-build both gateway binaries for a 64-bit Raspberry Pi (aarch64-unknown-linux-gnu), then
# start the mio binary under qemu-user and check that it answers /health.
#
#   scripts/pi-build.sh            # installs the target, the cross gcc and qemu-user if missing
#
# The binaries land in target/aarch64-unknown-linux-gnu/release/ (copy `clawgate` to the Pi).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if ((${#need[@]})); then
    echo "pi-build.sh: installing ${need[*]}" >&2
    apt-get install -y "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo build --release --target "$target" -p clawgate -p clawgate-smol
bin="target/$target/release/clawgate"
ls -l "$bin" "target/$target/release/clawgate-smol"

state="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
HOME="$state" OPENCLAW_STATE_DIR="$state/state" \
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin" gateway run --port "$port" --token pi-check \
    >"$state/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do
    if body="$(curl -fsS "http://127.0.0.1:$port/health" 2>/dev/null)"; then
        echo "pi-build.sh: aarch64 clawgate under qemu answered /health: $body"
        exit 0
    fi
    sleep 0.1
done
cat "$state/log" >&2
echo "pi-build.sh: the aarch64 binary did not answer /health" >&2
exit 1
