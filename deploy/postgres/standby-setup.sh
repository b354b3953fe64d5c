#!/usr/bin/env bash
# A hot standby of the ztcp primary (primary-setup.sh): a base backup over the replication protocol,
# then streaming, named so the primary waits for it (synchronous). Run as the postgres OS user on the
# standby, with the server stopped and PGDATA absent or empty; start the server afterwards.
#
#   PGDATA=/var/lib/postgresql/16/main PRIMARY_HOST=10.0.1.20 STANDBY_NAME=ztcp_dc2 \
#   REPLICATION_PASSWORD_FILE=/etc/ztcp/replicator.secret ./standby-setup.sh
#
# The password goes into a passfile (0600) next to PGDATA, never argv. The standby serves reads
# (hot_standby) and refuses writes until `promote.sh` makes it the primary.
set -euo pipefail
# Debian keeps the server binaries out of PATH: PGBIN, else the newest /usr/lib/postgresql/<major>/bin.
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
export PATH="${PGBIN:+$PGBIN:}$PATH"
: "${PGDATA:?PGDATA: the (empty) data directory}"
: "${PRIMARY_HOST:?PRIMARY_HOST: the address of the primary}"
: "${REPLICATION_PASSWORD_FILE:?REPLICATION_PASSWORD_FILE: a file holding the replication password}"
PRIMARY_PORT=${PRIMARY_PORT:-5432}
STANDBY_NAME=${STANDBY_NAME:-ztcp_standby}
REPLICATION_USER=${REPLICATION_USER:-replicator}
PASSFILE=${PASSFILE:-$(dirname "$PGDATA")/.ztcp-replication.pgpass}
SLOT=${SLOT:-${STANDBY_NAME//[^a-z0-9_]/_}}

if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
  echo "standby: $PGDATA is not empty; refusing to overwrite it" >&2
  exit 1
fi
umask 077
printf '%s:%s:replication:%s:%s\n' "$PRIMARY_HOST" "$PRIMARY_PORT" "$REPLICATION_USER" \
  "$(cat "$REPLICATION_PASSWORD_FILE")" >"$PASSFILE"
chmod 600 "$PASSFILE"

# -C -S: a replication slot on the primary, so WAL the standby still needs is never removed.
PGPASSFILE="$PASSFILE" pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" -w \
  -D "$PGDATA" -X stream -C -S "$SLOT" --checkpoint=fast

cat >>"$PGDATA/postgresql.auto.conf" <<CONF
# Written by deploy/postgres/standby-setup.sh
primary_conninfo = 'host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER passfile=''$PASSFILE'' application_name=$STANDBY_NAME'
primary_slot_name = '$SLOT'
cluster_name = '$STANDBY_NAME'
hot_standby = on
CONF
touch "$PGDATA/standby.signal"
echo "standby: $STANDBY_NAME cloned from $PRIMARY_HOST:$PRIMARY_PORT (slot $SLOT); start the server"
