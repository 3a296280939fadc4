#!/usr/bin/env bash
# Head node of a litesearch cluster: install PostgreSQL, create the study database and role,
# listen on localhost and the private network only, and write ~/.litesearch/env (mode 600) with
# LITESEARCH_STORAGE (and LITESEARCH_RESULTS), which the head sources before `ray start`, so
# every job submitted to the cluster finds the study without a password on a command line.
#
# The password: $LITESEARCH_DB_PASSWORD when set (e.g. fetched from a secrets manager by an
# earlier setup command), else the one kept in ~/.litesearch/db_password, else a new random one.
# It is never in the repository and never printed. Re-running is safe (idempotent).
set -euo pipefail
umask 077
secrets="$HOME/.litesearch"
mkdir -p "$secrets"
if [ -n "${LITESEARCH_DB_PASSWORD:-}" ]; then
  printf '%s' "$LITESEARCH_DB_PASSWORD" > "$secrets/db_password"
elif [ ! -s "$secrets/db_password" ]; then
  openssl rand -hex 16 > "$secrets/db_password"
fi
password=$(tr -d '\n' < "$secrets/db_password")

# root (containers, many on-prem hosts) has no sudo; anyone else needs it
if [ "$(id -u)" = 0 ]; then
  as_root() { "$@"; }
  as_postgres() { (cd / && runuser -u postgres -- "$@"); }
else
  as_root() { sudo "$@"; }
  as_postgres() { (cd / && sudo -u postgres "$@"); }
fi

if ! command -v pg_ctlcluster >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
conf_dir=$(ls -d /etc/postgresql/*/main | sort -V | tail -n 1)
version=$(basename "$(dirname "$conf_dir")")
private_ip=$(hostname -I | awk '{print $1}')
# Listen on the private address (the GPU workers may run the final job) and localhost; never
# 0.0.0.0. The AWS security group Ray creates admits only the cluster's own nodes and SSH.
as_root sed -i "s/^#\?listen_addresses *=.*/listen_addresses = 'localhost,$private_ip'/" \
  "$conf_dir/postgresql.conf"
as_root sed -i "s/^#\?max_connections *=.*/max_connections = 200/" "$conf_dir/postgresql.conf"
# Password (SCRAM) logins for the study's role from this host's subnets only.
rule="host litesearch litesearch samenet scram-sha-256"
as_root grep -qxF "$rule" "$conf_dir/pg_hba.conf" || echo "$rule" | as_root tee -a "$conf_dir/pg_hba.conf" >/dev/null
# systemd where it runs; Debian's own cluster wrapper where it does not (containers)
if [ -d /run/systemd/system ]; then
  as_root systemctl enable postgresql >/dev/null
  as_root systemctl restart postgresql
else
  as_root pg_ctlcluster "$version" main restart || as_root pg_ctlcluster "$version" main start
fi

# The password goes through stdin, not argv: `ps` on the head never shows it.
as_postgres psql -q -v ON_ERROR_STOP=1 <<SQL
SELECT 'CREATE ROLE litesearch LOGIN'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'litesearch')\gexec
ALTER ROLE litesearch PASSWORD '$password';
SELECT 'CREATE DATABASE litesearch OWNER litesearch'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'litesearch')\gexec
SQL

# The driver spelled out: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not
# installed; with +psycopg2 `optuna trials`, optuna-dashboard and litesearch all open it.
cat > "$secrets/env" <<ENV
LITESEARCH_STORAGE=postgresql+psycopg2://litesearch:$password@$private_ip:5432/litesearch
LITESEARCH_RESULTS=${LITESEARCH_RESULTS:-$HOME/litesearch-results}
ENV
echo "study database ready on $private_ip:5432 (credentials in $secrets/env)"
