"""Serve optuna-dashboard on a study database: every trial of every search, live.

    python tune_jobs/dashboard.py [--storage URL] [--output DIR] [--host 127.0.0.1] [--port 8081]

The URL comes from --storage, else $LITESEARCH_STORAGE (a cluster's head exports it), else
OUTPUT/study.db, so a password never has to be typed on a command line (where `ps` shows it);
`postgresql://` URLs get the driver we ship. It listens on localhost only: on a cluster, reach
it through SSH (`ray attach cluster.yaml -p 8081`), never by opening the port.
"""

from __future__ import annotations

import argparse
import sys


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", help="study database URL (default $LITESEARCH_STORAGE, else "
                   "OUTPUT/study.db)")
    p.add_argument("--output", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    return p


def main(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    from tune_jobs.study.storage import mask_url, open_storage, resolve_storage_url

    url = resolve_storage_url(args.storage, args.output)
    try:
        storage = open_storage(url)
    except ConnectionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"optuna-dashboard for {mask_url(url)} on http://{args.host}:{args.port}/", flush=True)
    run_server(storage, host=args.host, port=args.port)
    return 0


def cli() -> None:
    """The console script (see [project.scripts] in pyproject.toml)."""
    sys.exit(main(get_args_parser().parse_args()))


if __name__ == "__main__":
    cli()
