#!/usr/bin/env bash
# One litesearch node's setup and Ray start, for every cluster config (cluster.yaml on AWS,
# configs/cluster/local.yaml on your own machines): `ray up` runs
#
#   bash ~/litesearch/configs/cluster/node.sh setup                 (every node)
#   bash ~/litesearch/configs/cluster/node.sh start-head [ray start flags...]
#   bash ~/litesearch/configs/cluster/node.sh start-worker [ray start flags...]
#
# setup: the project in ~/venv as the README installs it, and a login shell that activates it
# and speaks Ray's token auth (so `ray exec CLUSTER 'ray status'` works as typed) and, on the
# head, knows the study database (~/.litesearch/env from head_postgres.sh). start-*: the
# open-files limit raised as far as the host allows (a lower hard limit must not stop the
# node), then `ray start`; the head first sources ~/.litesearch/env (head_postgres.sh) and
# then puts configs/grafana/litesearch.json where Ray's Grafana loads dashboards.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
venv="${LITESEARCH_VENV:-$HOME/venv}"

login_line() {  # append a line to ~/.bashrc once
  grep -qxF "$1" "$HOME/.bashrc" 2>/dev/null || echo "$1" >> "$HOME/.bashrc"
}

raise_open_files() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

case "${1:-}" in
  setup)
    test -d "$venv" || python3 -m venv "$venv"
    "$venv/bin/pip" install -q -e "$here[dev]"
    login_line "source $venv/bin/activate"
    login_line "export RAY_AUTH_MODE=token"
    # the head's study database and results path (head_postgres.sh), for what a user runs
    # there by hand: `ray exec CLUSTER 'python tune_jobs/dashboard.py'`, `optuna trials ...`
    login_line 'if [ -f ~/.litesearch/env ]; then set -a; . ~/.litesearch/env; set +a; fi'
    ;;
  start-head)
    shift
    raise_open_files
    export RAY_AUTH_MODE=token
    # The autoscaler the tests run (v1). `ray up` (Ray >= 2.50) exports
    # RAY_enable_autoscaler_v2=1 before this command; v2 with the local provider never sets
    # a worker up (Ray 2.60, tests/test_ray_up.py: "Adding 1 node(s)" every 5 s, none started)
    export RAY_enable_autoscaler_v2=0
    if [ -f "$HOME/.litesearch/env" ]; then set -a; . "$HOME/.litesearch/env"; set +a; fi
    "$venv/bin/ray" stop >/dev/null 2>&1 || true
    "$venv/bin/ray" start --head --port=6379 --dashboard-host=127.0.0.1 \
      --metrics-export-port=8080 "$@"
    # litesearch's Grafana dashboard beside Ray's own, in the folder that the Grafana config
    # Ray writes (session_latest/metrics/grafana/grafana.ini) provisions dashboards from
    dashboards="${RAY_TMPDIR:-${TMPDIR:-/tmp}}/ray/session_latest/metrics/grafana/dashboards"
    mkdir -p "$dashboards"
    cp "$here/configs/grafana/litesearch.json" "$dashboards/litesearch_grafana_dashboard.json"
    ;;
  start-worker)
    shift
    raise_open_files
    export RAY_AUTH_MODE=token
    "$venv/bin/ray" stop >/dev/null 2>&1 || true
    exec "$venv/bin/ray" start --address="${RAY_HEAD_IP:?ray up sets RAY_HEAD_IP}:6379" \
      --metrics-export-port=8080 "$@"
    ;;
  *)
    echo "usage: $0 setup | start-head [flags] | start-worker [flags]" >&2
    exit 2
    ;;
esac
