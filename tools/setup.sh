#!/usr/bin/env bash
# One-time set-up of a fresh Debian/Ubuntu machine with Node.js >= 20: system packages, then the
# npm workspace. Safe to run again. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/stack/install.sh
# The Python SDK (libs/monitor-client-py) and its tests run under Debian's /usr/bin/python3 with
# these apt packages (PyPI is not needed); skipped when they are already importable.
if ! /usr/bin/python3 -c 'import torch, grpc, grpc_tools, google.protobuf, numpy, pytest' >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing the Python SDK's packages from apt (python3-torch, python3-grpcio, ...)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-torch python3-grpcio python3-protobuf \
    python3-grpc-tools python3-numpy python3-pytest >/dev/null
fi
# `cm report` rasterises its SVG figures with sharp (librsvg + fontconfig): without a font on the
# machine every label would be blank. DejaVu Sans is the font the figures ask for.
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing fonts-dejavu-core from apt (text in cm report's figures)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq fonts-dejavu-core fontconfig >/dev/null
fi
# `cm ui`'s browser tests, tools/screenshots.ts and `npm run bench:ui` drive Debian's chromium with
# playwright-core (its executable path: no browser download); skipped when it is installed.
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing chromium from apt (cm ui's browser tests and screenshots)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
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
