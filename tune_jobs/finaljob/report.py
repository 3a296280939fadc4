"""report.md and the PNG plots of a final job."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from optuna.trial import FrozenTrial, TrialState

from tune_jobs.finaljob.assess import Assessment
from tune_jobs.study.summary import ledger_line, pareto_front, trial_score

if TYPE_CHECKING:
    from tune_jobs.finaljob.job import FinalResult


def plot_pareto(trials: list[FrozenTrial], chosen: FrozenTrial, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for state, colour in ((TrialState.PRUNED, "#bbbbbb"), (TrialState.COMPLETE, "#1f77b4")):
        pts = [(t.user_attrs["latency_ratio"], t.user_attrs["f1"]) for t in trials
               if t.state == state and t.user_attrs.get("f1") is not None
               and t.user_attrs.get("latency_ratio") is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=18, c=colour, label=state.name.lower())
    front = pareto_front(trials)
    if front:
        ax.plot([t.user_attrs["latency_ratio"] for t in front],
                [t.user_attrs["f1"] for t in front], "-", c="#1f77b4", lw=1, label="Pareto front")
    ax.scatter([chosen.user_attrs["latency_ratio"]], [chosen.user_attrs["f1"]], marker="*",
               s=220, c="#d62728", label=f"chosen (#{chosen.number})", zorder=5)
    ax.set_xlabel("latency ratio (candidate / reference, CPU batch 1)")
    ax.set_ylabel("macro-F1 (validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(trials: list[FrozenTrial], path: Path, top: int = 5) -> Path:
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE
                   and trial_score(t) is not None), key=trial_score)[:top]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for t in done:
        steps = sorted(t.intermediate_values)
        ax.plot(steps, [t.intermediate_values[s] for s in steps], marker=".",
                label=f"#{t.number}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("score (lower is better)")
    ax.set_title(f"learning curves of the top {len(done)} trials")
    ax.grid(alpha=0.3)
    if done:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path) -> Path:
    cm = np.asarray(confusion, dtype=float)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(header: list[str], rows: list[list]) -> str:
    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def model_row(name: str, m: Assessment) -> list:
    return [name, m.test.f1, m.test.accuracy, m.speed.cpu.onnxruntime_ms, m.speed.cpu.eager_ms,
            m.ratio.latency_ratio, m.costs.params, m.costs.macs, m.scores.score]


MODEL_HEADER = ["model", "macro-F1", "accuracy", "ORT ms", "eager ms", "latency ratio",
                "params", "MACs", "score"]


def write_report(path: Path, metrics: FinalResult, trials: list[FrozenTrial],
                 classes: list[str], plots: dict[str, str], ledger: dict) -> Path:
    chosen, m = metrics.chosen, metrics.model
    states = Counter(t.state.name for t in trials)
    wall = sum(t.user_attrs.get("wall_seconds") or 0 for t in trials)
    epochs = sum(t.user_attrs.get("epochs_done") or 0 for t in trials)
    parts = [
        f"# litesearch final report: study `{metrics.study}`",
        "",
        "## Chosen trial",
        "",
        f"Trial #{chosen.number} ({chosen.state}), chosen by {chosen.why}. "
        f"Retrained from scratch on train + validation for {metrics.epochs} epochs at "
        f"{metrics.input_size} px; tested on the {metrics.test_source} test split "
        f"({m.test_images} images).",
        "",
        _table(["in the search", "score", "val macro-F1", "latency ratio", "epochs"],
               [[f"trial #{chosen.number}", chosen.score, chosen.f1, chosen.latency_ratio,
                 chosen.epochs_done]]),
        "",
        "## Test metrics, searched model against baselines",
        "",
        _table(MODEL_HEADER, [model_row("searched", m)]
               + [model_row(name, b) for name, b in metrics.baselines.items()]),
        "",
        *[f"Warning: {name} did not train with this recipe (training loss "
          f"{b.training.first_loss:.3f} at epoch 1, {b.training.last_loss:.3f} at "
          "the end): its row says more about the recipe than about the network.\n"
          for name, b in [("the searched model", m), *metrics.baselines.items()]
          if b.training is not None and not b.training.trained],
        "Latency: CPU, batch 1, "
        f"{m.speed.threads} thread(s), median; latency ratio against the reference "
        f"`{metrics.reference}` measured in the same run. score = 0.5 x latency ratio + "
        f"sigmoid(20 x ({metrics.f1_ref} - F1)), lower is better.",
        "",
        _table(["metric", "value"], [
            ["TorchScript ms (CPU)", m.speed.cpu.torchscript_ms],
            ["eager batch 64, img/s", m.speed.cpu.eager_batch64_img_s],
            ["ONNX Runtime batch 64, img/s", m.speed.cpu.onnxruntime_batch64_img_s],
            ["size (bytes)", m.costs.size_bytes],
            ["submit time: whole test set at batch 1, s", m.submit.seconds],
            ["competition score (0.5 x submit / 43.16 + sigmoid)", m.scores.competition_score],
            *([["CUDA eager ms", m.speed.cuda.eager_ms]] if m.speed.cuda else []),
        ]),
        "",
        "## Per class (test)",
        "",
        _table(["class", "precision", "recall", "F1", "support"],
               [[c, v.precision, v.recall, v.f1, v.support]
                for c, v in m.test.per_class.items()]),
        "",
        f"![confusion matrix]({plots['confusion']})",
        "",
        "## Search summary",
        "",
        _table(["trials", *sorted(states), "trial-epochs", "trial wall time (s)"],
               [[len(trials), *[states[s] for s in sorted(states)], epochs, wall]]),
        "",
        ledger_line(ledger) + ".",
        "",
        f"![Pareto front]({plots['pareto']})",
        "",
        f"![learning curves]({plots['curves']})",
        "",
    ]
    path.write_text("\n".join(parts))
    return path
