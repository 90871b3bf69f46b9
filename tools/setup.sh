#!/usr/bin/env bash
# One-time set-up of a fresh Debian/Ubuntu machine with Node.js >= 20: system packages, then the
# npm workspace. Safe to run again. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/stack/install.sh
# onnxruntime-node's install script downloads optional GPU binaries; the CPU build ships in the
# package, so skip the download (machines without internet install fine).
export ONNXRUNTIME_NODE_INSTALL=skip
# `npm install` rather than `npm ci`: chdb lists per-platform optional packages of which only the
# linux-x64 one is published, and `npm ci` rejects a lock without the unpublished ones. Every
# dependency is pinned exactly and the lock is committed, so `npm install` installs the locked tree.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
echo "setup: done"
