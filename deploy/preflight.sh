#!/bin/sh
# Refuses to let the stack start with a placeholder or empty password: the compose file runs this
# first (service `preflight`) and every other service waits for it to succeed. Placeholders are the
# `change-me-*` values of .env.example, which a copied file keeps until someone edits it.
# POSIX sh: it runs in the NATS alpine image, and in tests on the host.
status=0
for var in CM_NATS_PASSWORD CM_CLICKHOUSE_PASSWORD CM_GRAFANA_CH_PASSWORD GRAFANA_ADMIN_PASSWORD; do
  eval "value=\${$var:-}"
  case "$value" in
    '') echo "preflight: $var is empty: set it in deploy/.env" >&2; status=1 ;;
    change-me*) echo "preflight: $var still has the placeholder of .env.example: choose a password in deploy/.env" >&2; status=1 ;;
  esac
done
[ "$status" -eq 0 ] && echo "preflight: passwords set"
exit "$status"
