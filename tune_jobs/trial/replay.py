"""A trial that replays a learning-curve table instead of training: the same candidate from the
same config, its recorded epochs reported one by one, so that the real search path (Ray Tune,
the searcher, ASHA, the study mirror) can be run over many seeds in minutes
(`benchmarks/curves.py replay`).

A table row is what `benchmarks/curves.py build` writes: the candidate's drawn values, its
outcome, latency ratio, params, MACs, seconds per epoch and `curve`, per epoch
`[epoch, f1, val_loss, accuracy, score, loss, lr]` (older tables stop at the score). A
candidate trained with several seeds has a row per seed: each replay seed draws one of them
(`drawn_row`), so that training noise enters every replayed search, as it enters a real one.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from tune_jobs.outcome import Outcome
from tune_jobs.trial.data import TrialData, flatten
from tune_jobs.trial.report import COLUMN, TrialReport, Where, next_tse_ema
from tune_jobs.trial.score import over_budget

TABLE_KEY = "replay_table"  # TrialData.extra[TABLE_KEY]: cell key -> its rows (seeds)
CONFIG_KEY = "replay_configs"  # TrialData.extra[CONFIG_KEY]: config_key(config) -> cell key


def cell_key(params: dict[str, Any]) -> str:
    """A candidate's identity in a table: its drawn values (every name, constants too)."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_key(config: dict[str, Any]) -> str:
    """A trial config as a define-by-run searcher passes it: the values it drew, by flat name."""
    return cell_key(flatten(config))


def config_keys(space, num_classes: int) -> dict[str, str]:
    """For every candidate of a grid: the key of the config a define-by-run searcher (TPE,
    random, NSGA-II) draws for it -> the candidate's cell key, so that a replayed trial finds
    its row without sampling the space (and importing torch) in the worker."""
    from tune_jobs.trial.space import enumerate_space, flat_params

    searched = set(flat_params(space))
    return {config_key({k: v for k, v in c.params.items() if k in searched}): cell_key(c.params)
            for c in enumerate_space(space, num_classes)}


def drawn_row(key: str, rows: list[dict], replay_seed: int) -> dict:
    """The training of candidate `key` that replay seed `replay_seed` sees: a fixed draw per
    (candidate, replay seed), so that a duplicate proposal sees the same training again and
    another replay seed may see another one."""
    return rows[zlib.crc32(f"{key}:{replay_seed}".encode()) % len(rows)]


def _row_for(config: dict, data: TrialData) -> dict | None:
    key = data.extra.get(CONFIG_KEY, {}).get(config_key(config))
    if key is None:  # hyperopt draws every name, used or not: rebuild the candidate
        from tune_jobs.trial.space import candidate_from_config

        key = cell_key(candidate_from_config(config, data.config.space, len(data.classes)).params)
    rows = data.extra[TABLE_KEY].get(key)
    return drawn_row(key, rows, data.config.search.seed) if rows else None


def replay_trial(config: dict, data: TrialData) -> None:
    """Tune function: report the table's epochs of the candidate `config` draws. The score is
    recomputed with this run's `f1_ref`; budgets are checked as the trainable does."""
    from ray import tune

    cfg = data.config
    row = _row_for(config, data)
    f1_ref = cfg.objective.f1_ref
    if row is None:
        tune.report(TrialReport.failed(Outcome.ERROR, "the candidate is not in the replayed "
                                       "table", f1_ref).as_result())
        return
    where = Where(latency_ratio=float(row["latency_ratio"] or 1.0), params=row.get("n_params"),
                  macs=row.get("macs"), image_size=row["params"].get("train/image_size"),
                  trial_dir=tune.get_context().get_trial_dir())
    why = over_budget(row.get("n_params"), row.get("macs"), row.get("latency_ratio"),
                      cfg.objective)
    curve = row.get("curve") or []
    if why or row.get("outcome") != Outcome.TRAINED or not curve:
        outcome = Outcome.OVER_BUDGET if why else Outcome(row.get("outcome", "error"))
        tune.report(TrialReport.failed(outcome, why or row.get("reason", ""), f1_ref,
                                       where).as_result())
        return
    seconds, tse_ema = float(row.get("epoch_seconds") or 0.0), 0.0
    for point in curve[:cfg.scheduler.max_epochs]:
        epoch, f1, val_loss, accuracy = (point[COLUMN[m]]
                                          for m in ("epoch", "f1", "val_loss", "accuracy"))
        # an older table keeps no training loss or learning rate: the validation loss stands in
        loss, lr = ((point[COLUMN["loss"]], point[COLUMN["lr"]]) if len(point) > COLUMN["lr"]
                    else (val_loss, None))
        tse_ema = next_tse_ema(tse_ema, loss)
        tune.report(TrialReport.trained(where, int(epoch), f1, accuracy, val_loss, loss, f1_ref,
                                        lr=lr, tse_ema=tse_ema, epoch_seconds=seconds,
                                        wall_seconds=seconds * epoch).as_result())


__all__ = ["CONFIG_KEY", "TABLE_KEY", "cell_key", "config_key", "config_keys", "drawn_row",
           "replay_trial"]
