#!/usr/bin/env bash
# Install the servers Concept-Monitor runs locally (Debian/Ubuntu, apt): nats-server (JetStream),
# clickhouse-server + clickhouse-client, and zookeeper (replicated ClickHouse tables of a local
# cluster). Skips what is already installed. Needs root or sudo.
set -euo pipefail
need=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
if [ ${#need[@]} -eq 0 ]; then
  echo "stack: nats-server, clickhouse-server and zookeeper already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "stack: installing ${need[*]} from apt"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the packages from starting system services: `cm stack up` runs them as plain
# processes under .cm/stack instead.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "stack: installed ${need[*]}"
