#!/usr/bin/env bash
# The primary of a synchronous PostgreSQL pair for ztcp (ZTCP_DATABASE_URL): streaming replication to
# a hot standby in the other data centre, every commit acknowledged only once the standby has it on
# disk (RPO 0). Run as the postgres OS user on the primary; idempotent.
#
#   PGDATA=/var/lib/postgresql/16/main PGCONF=/etc/postgresql/16/main \
#   STANDBY_NAMES=ztcp_dc2 REPLICATION_CIDR=10.0.2.0/24 \
#   REPLICATION_PASSWORD_FILE=/etc/ztcp/replicator.secret ./primary-setup.sh
#
# PGCONF: where postgresql.conf and pg_hba.conf are (Debian: /etc/postgresql/<major>/<cluster>;
# default PGDATA). STANDBY_NAMES: the standbys' names (their cluster_name, set by standby-setup.sh),
# comma-separated; with two, `ANY 1` keeps commits going when either one is down. The password is
# read from a file (never argv, never the environment) and sent once, to set the role's SCRAM secret.
# With the server running, the role is created and the configuration reloaded; a changed wal_level or
# max_wal_senders needs a restart (the defaults of PostgreSQL >= 10 already suffice).
# Synchronous means what it says: from then on a commit (every ztcp append, decision, observation)
# returns only once a standby has it, so set up the standby (standby-setup.sh) before starting ztcp.
set -euo pipefail
# Debian keeps the server binaries out of PATH: PGBIN, else the newest /usr/lib/postgresql/<major>/bin.
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
export PATH="${PGBIN:+$PGBIN:}$PATH"
: "${PGDATA:?PGDATA: the data directory}"
PGCONF=${PGCONF:-$PGDATA}
STANDBY_NAMES=${STANDBY_NAMES:-ztcp_standby}
REPLICATION_CIDR=${REPLICATION_CIDR:?REPLICATION_CIDR: the standby network, e.g. 10.0.2.0/24}
REPLICATION_USER=${REPLICATION_USER:-replicator}
SYNC_COUNT=${SYNC_COUNT:-1}

conf="$PGCONF/ztcp-replication.conf"
cat >"$conf" <<CONF
# Written by deploy/postgres/primary-setup.sh: streaming replication, synchronous.
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '1GB'            # a standby briefly away catches up from WAL kept here (and its slot)
hot_standby = on                 # used by the standby once this server is one (after a switch-over)
synchronous_commit = on          # a commit returns once the WAL is flushed on a synchronous standby
synchronous_standby_names = 'ANY $SYNC_COUNT ($STANDBY_NAMES)'
wal_sender_timeout = '10s'       # a standby that stops answering is noticed within 10 s
CONF
grep -q "^include_if_exists 'ztcp-replication.conf'" "$PGCONF/postgresql.conf" \
  || echo "include_if_exists 'ztcp-replication.conf'" >>"$PGCONF/postgresql.conf"

hba="$PGCONF/pg_hba.conf"
line="host replication $REPLICATION_USER $REPLICATION_CIDR scram-sha-256"
if ! grep -qxF "$line" "$hba"; then  # first, so it wins over broader lines that follow
  { echo "$line"; cat "$hba"; } >"$hba.ztcp-new" && cat "$hba.ztcp-new" >"$hba" && rm -f "$hba.ztcp-new"
fi

if pg_isready -q; then
  : "${REPLICATION_PASSWORD_FILE:?REPLICATION_PASSWORD_FILE: a file holding the replication password}"
  export REPLICATION_PASSWORD_FILE  # read by psql's \set below, inside the server session's script
  psql -X -v ON_ERROR_STOP=1 -q -d postgres -v user="$REPLICATION_USER" <<'SQL'
\set pw `cat "$REPLICATION_PASSWORD_FILE"`
SET password_encryption = 'scram-sha-256';
-- This session's own commits must not wait for a standby that cannot exist before its role does.
SET synchronous_commit = local;
SELECT format('CREATE ROLE %I WITH REPLICATION LOGIN', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH PASSWORD %L', :'user', :'pw') \gexec
SELECT pg_reload_conf();
SQL
  echo "primary: replication role $REPLICATION_USER ready; synchronous standbys: ANY $SYNC_COUNT ($STANDBY_NAMES)"
else
  echo "primary: configuration written; start the server and run this again to create the replication role"
fi
