"""litesearch COMMAND [ARGS ...]: one command for every job, as `ray`, `optuna` and `wandb`
have. Each subcommand is the entry script of the same name (`litesearch search` is `python
tune_jobs/search.py`), imported only when it runs, so `--help` is fast and a job's heavy
imports (torch, Ray) are paid by that job alone.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (its module, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("tune_jobs.search", "search architectures and hyperparameters (Ray Tune + "
               "Optuna + ASHA); --final goes on to the final job"),
    "final": ("tune_jobs.final", "retrain a study's chosen trial with seeds, benchmark it "
              "against baselines, export it and report"),
    "predict": ("tune_jobs.predict", "classify a folder of images with an exported model"),
    "coco": ("data_utils.coco", "crop a COCO-format detection set (TACO) into class folders"),
    "dashboard": ("tune_jobs.dashboard", "serve optuna-dashboard on a study"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: litesearch COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "litesearch COMMAND --help says more of each."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"litesearch: no command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = module.get_args_parser()
    parser.prog = f"litesearch {name}"
    return int(module.main(parser.parse_args(rest)) or 0)


def cli() -> None:
    """The console script (see [project.scripts] in pyproject.toml)."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    cli()


__all__ = ["COMMANDS", "main"]
