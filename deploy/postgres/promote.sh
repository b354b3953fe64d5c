#!/usr/bin/env bash
# Make the hot standby the primary — a person's decision (docs/operations.md): first make sure the
# old primary is down and stays down (stopped, or fenced off the network), or two primaries would
# accept writes. Run as the postgres OS user on the standby.
#
#   PGDATA=/var/lib/postgresql/16/main ./promote.sh
#
# Then point ZTCP_DATABASE_URL (or the DNS name / virtual IP it names) at this server and rebuild the
# old primary as the new standby (standby-setup.sh). Until a standby is back, commits here are not
# replicated: promote.sh empties synchronous_standby_names here (unless KEEP_SYNCHRONOUS=1), so the
# surviving data centre serves alone; reset it once the new standby streams.
set -euo pipefail
# Debian keeps the server binaries out of PATH: PGBIN, else the newest /usr/lib/postgresql/<major>/bin.
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
export PATH="${PGBIN:+$PGBIN:}$PATH"
: "${PGDATA:?PGDATA: the data directory of the standby}"
started=$(date +%s.%N)
pg_ctl promote -D "$PGDATA" -w -t 60
until [ "$(psql -X -At -d postgres -c 'SELECT pg_is_in_recovery()')" = "f" ]; do sleep 0.1; done
if [ "${KEEP_SYNCHRONOUS:-0}" != "1" ]; then
  # Alone now: waiting for a synchronous standby that is gone would stop every write (and ztcp with
  # it). Commits are acknowledged locally until a standby is rebuilt and this is set back (RPO > 0
  # meanwhile). KEEP_SYNCHRONOUS=1 keeps waiting instead: no write is acknowledged without a copy.
  psql -X -q -d postgres -c "ALTER SYSTEM SET synchronous_standby_names = ''" -c "SELECT pg_reload_conf()" >/dev/null
  echo "promote: synchronous replication suspended until a new standby is set up (standby-setup.sh," \
       "then ALTER SYSTEM RESET synchronous_standby_names)"
fi
echo "promoted in $(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $started }") s: this server is the primary now"
