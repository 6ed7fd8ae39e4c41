#!/usr/bin/env bash
# Runs a command with the project's toolchain, provisioning what is missing:
#   - Node >= 22.19 (Node 24 LTS from the npm registry's node-linux-<arch> package, into .toolchain/node)
#   - pnpm 12.4.2 (from the npm registry, into .toolchain/pnpm) when no pnpm is on PATH
#   - dependencies (pnpm install --frozen-lockfile)
# Usage: bash scripts/toolchain.sh <command> [args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TC="$ROOT/.toolchain"
NODE_VERSION=24.21.0
PNPM_VERSION=12.4.2

log() { echo "[toolchain] $*" >&2; }

node_is_recent() {
  command -v node >/dev/null 2>&1 &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=19)?0:1)'
}

if [ -x "$TC/node/bin/node" ]; then
  export PATH="$TC/node/bin:$PATH"
elif ! node_is_recent; then
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) log "unsupported architecture $(uname -m): install Node >= 22.19 yourself"; exit 1 ;;
  esac
  log "Node $(node --version 2>/dev/null || echo 'not found') is older than 22.19: installing Node $NODE_VERSION into .toolchain/node"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_VERSION" >/dev/null)
  mkdir -p "$TC/node.partial"
  tar xzf "$tmp"/node-linux-"$arch"-*.tgz -C "$TC/node.partial" --strip-components=1
  rm -rf "$tmp" "$TC/node"
  mv "$TC/node.partial" "$TC/node"
  export PATH="$TC/node/bin:$PATH"
fi

if [ -x "$TC/pnpm/node_modules/.bin/pnpm" ]; then
  export PATH="$TC/pnpm/node_modules/.bin:$PATH"
elif ! command -v pnpm >/dev/null 2>&1; then
  log "pnpm not found: installing pnpm $PNPM_VERSION into .toolchain/pnpm"
  npm install --silent --no-audit --no-fund --prefix "$TC/pnpm" "pnpm@$PNPM_VERSION" >/dev/null
  export PATH="$TC/pnpm/node_modules/.bin:$PATH"
fi

cd "$ROOT"
if [ "${SKIP_INSTALL:-}" != "1" ]; then
  pnpm install --frozen-lockfile --reporter=silent
fi
export SKIP_INSTALL=1
exec "$@"
