"""report.md and the PNG plots of a final job."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from optuna.trial import TrialState

from tune_jobs.finaljob.assess import Assessment
from tune_jobs.finaljob.claims import Claim
from tune_jobs.finaljob.results import FinalResult, ModelResult
from tune_jobs.finaljob.stats import Estimate, estimate
from tune_jobs.study.ranking import pareto_front
from tune_jobs.study.summary import ledger_line
from tune_jobs.study.trials import StudyTrial
from tune_jobs.trial.score import score


def _yerr(e: Estimate) -> list[list[float]]:
    low, high = e.ci95 or (e.mean, e.mean)
    return [[e.mean - low], [high - e.mean]]


def plot_pareto(trials: list[StudyTrial], chosen: StudyTrial, path: Path,
                finals: Sequence[ModelResult] = ()) -> Path:
    """The search's trials (validation F1) and the final models (test F1, mean over seeds
    with its 95 % interval) against the latency ratio."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for state, colour in ((TrialState.PRUNED, "#bbbbbb"), (TrialState.COMPLETE, "#1f77b4")):
        pts = [(t.latency_ratio, t.f1) for t in trials
               if t.state == state and t.f1 is not None and t.latency_ratio is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=18, c=colour, label=state.name.lower())
    front = pareto_front(trials)
    if front:
        ax.plot([t.latency_ratio for t in front], [t.f1 for t in front], "-", c="#1f77b4",
                lw=1, label="Pareto front")
    if chosen.f1 is not None and chosen.latency_ratio is not None:
        ax.scatter([chosen.latency_ratio], [chosen.f1], marker="*", s=220, c="#d62728",
                   label=f"chosen (#{chosen.number})", zorder=5)
    for m, colour in zip(finals, plt.cm.Dark2.colors, strict=False):
        ax.errorbar([m.latency_ratio], [m.f1.mean], yerr=_yerr(m.f1), fmt="D", ms=6,
                    capsize=4, c=colour, zorder=6,
                    label=f"{m.name}: test, {m.seeds} seed(s)" + ("" if m.trained
                                                                  else " (did not train)"))
    ax.set_xlabel("latency ratio (candidate / reference, CPU batch 1)")
    ax.set_ylabel("macro-F1 (search: validation; final models: test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(trials: list[StudyTrial], path: Path, top: int = 5) -> Path:
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.score is not None),
                  key=lambda t: t.score or 0.0)[:top]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for t in done:
        steps = sorted(t.intermediate)
        ax.plot(steps, [t.intermediate[s] for s in steps], marker=".", label=f"#{t.number}")
    return _finish(fig, ax, path, "score (lower is better)",
                   f"learning curves of the top {len(done)} trials", legend=bool(done))


def plot_retrain(finals: Sequence[ModelResult], path: Path) -> Path:
    """Training loss per epoch of every final run: one colour per model, one line per seed."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for m, colour in zip(finals, plt.cm.Dark2.colors, strict=False):
        for i, run in enumerate(m.runs):
            ax.plot([h["epoch"] for h in run.history], [h["loss"] for h in run.history],
                    c=colour, lw=1.2, alpha=0.8,
                    label=f"{m.name} ({m.recipe} recipe)" if i == 0 else None)
    return _finish(fig, ax, path, "training loss",
                   "final trainings on train + validation, every seed", legend=bool(finals))


def _finish(fig, ax, path: Path, ylabel: str, title: str, legend: bool) -> Path:
    """Label an epoch plot, save it, free it."""
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
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


SEEDS_HEADER = ["model", "recipe", "input px", "seeds", "macro-F1", "accuracy",
                "latency ratio", "ORT ms", "params", "MACs", "score of the mean F1"]


def seeds_row(r: ModelResult, f1_ref: float) -> list:
    return [r.name, r.recipe, r.image_size, r.seeds, r.f1.text(), r.accuracy.text(),
            r.latency_ratio,
            r.onnxruntime_ms, r.params, r.macs, score(r.f1.mean, r.latency_ratio, f1_ref)]


def _comparison_section(metrics: FinalResult) -> list[str]:
    if not metrics.comparisons:
        return []
    rows = [[c.baseline, c.f1_difference.text(), c.latency_ratio, c.verdict]
            for c in metrics.comparisons]
    return ["### Searched model against each baseline", "",
            "Difference of mean test macro-F1 (searched - baseline) with Welch's 95 % interval "
            "(± is its standard error); the verdict is read from the interval: better or worse "
            "only when it excludes zero, never from one run, never against a model that did "
            "not train.", "",
            _table(["baseline", "macro-F1 difference", "latency ratio (searched / baseline)",
                    "verdict"], rows), ""]


def _claim_section(metrics: FinalResult) -> list[str]:
    c = metrics.claim
    if c is None:
        return []
    limit = c.latency_basis if c.latency_limit is None else f"{c.latency_limit:.3f}"
    rows = [[k.baseline, k.f1_difference.text(), f"> {k.bound:+g}", k.verdict,
             "" if k.half_width is None else f"±{k.half_width:.4f}",
             "" if k.seeds_for_target is None else k.seeds_for_target] for k in c.checks]
    power = ("" if c.half_width is None else
             f" Interval half-width reached: ±{c.half_width:.4f} with {metrics.seeds} seeds "
             f"per model; a ±{c.target_half_width:g} claim would need about "
             f"{c.seeds_for_target} seeds per model at the spreads seen.")
    return [f"## Claim ({c.point} operating point): {c.verdict}", "",
            f"The searched model is {c.statement}. Latency ratio {c.latency_ratio:.3f} "
            f"against a limit of {limit}: {'met' if c.fast_enough else 'not met'} (the "
            "models timed together, as the search timed candidates)." + _onnxruntime(c)
            + " Each baseline's check "
            "reads the lower end of Welch's 95 % interval of the macro-F1 difference (searched "
            "- baseline) against the bound: above it, shown; the whole interval below, "
            "refuted; across it, not shown (more seeds could tell)." + power, "",
            _table(["baseline", "macro-F1 difference", "lower end must be", "verdict",
                    "half-width", f"seeds for ±{c.target_half_width:g}"], rows), ""]


def _onnxruntime(c: Claim) -> str:
    """The claim's latency condition in ONNX Runtime, and whether it agrees."""
    o = c.onnxruntime
    if o is None:
        return ""
    agree = ("it agrees" if o.met == c.fast_enough else
             "**the runtimes disagree**: the verdict follows `objective.latency`, as the "
             "search measured; set `objective.latency: ort` to search and judge in ONNX Runtime")
    return (f" In ONNX Runtime (the fp32 exports at batch 1, each timed on its own): "
            f"{o.searched_ms:.3f} ms against {o.limit_ms:.3f} ms ({o.basis}): "
            f"{'met' if o.met else 'not met'}; {agree}.")


def _recipe_section(metrics: FinalResult) -> list[str]:
    rows = [[r.name, t.recipe, t.image_size,
             t.val_f1, "yes" if t.training.trained else "no",
             "yes" if (t.recipe, t.image_size) == (r.recipe, r.image_size) else "", t.source]
            for r in metrics.models for t in r.recipe_trials]
    if not rows:
        return []
    resized = ("" if not metrics.models[0].recipe_trials else
               " The accurate claim is judged at its budget's net's latency as that net "
               "ships, so the searched net was tried at the same sizes with its own recipe, "
               "and used at the best on validation no larger than the size that net ships at.")
    title = "### Baseline recipes and input sizes" + (
        ", and the searched net's sizes" if resized else "") + ", chosen on validation"
    return [title, "",
            "Each baseline trained once on the training split with the searched recipe and "
            "with its family's standard one (torchvision's reference, warm-up + cosine over "
            "the same epochs, learning rate scaled to the batch), at the searched input size "
            "and at each of final.baseline_image_sizes; the higher validation macro-F1 among "
            "those that trained is used, and the baseline is then trained, tested and timed "
            "at its size. The test split plays no part in the choice." + resized,
            "", _table(["model", "recipe", "input px", "validation macro-F1", "trained",
                        "used", "recipe source"], rows), ""]


def _int8_section(metrics: FinalResult) -> list[str]:
    if not metrics.int8:
        return []
    rows, notes = [], []
    for r in metrics.int8:
        rows.append([r.name, "fp32", estimate_text(r.fp32_f1), "", 1.0, "", 1.0,
                     r.fp32_size_bytes, "shipped" if r.shipped == "fp32" else ""])
        for f in r.formats:
            if f.error:
                rows.append([r.name, f.label, "", "", "", "", "", "", f"error: {f.error}"])
                continue
            rows.append([r.name, f.label, estimate_text(f.f1), f.f1_difference.text(),
                         f.latency_ratio, f.batch64_ratio, f.size_ratio, f.size_bytes,
                         "shipped" if r.shipped == "int8" and r.chosen == f.format
                         else "written" if r.chosen == f.format else ""])
        verdict = (f"**{r.name}**: int8 ({r.chosen}) shipped." if not r.flags else
                   f"**{r.name}**: fp32 shipped; int8 flagged: " + "; ".join(r.flags) + ".")
        notes.append(verdict)
        if r.worst_tensors:
            notes.append("Tensors that quantizing loses most at (SQNR in dB, own / "
                         "accumulated): " + ", ".join(f"`{t.tensor}` {t.own_db:.1f} / "
                                                      f"{t.model_db:.1f}"
                                                      for t in r.worst_tensors) + ".")
    return ["## int8 beside fp32", "",
            "ONNX Runtime static quantization (pre-processed, per-channel weights, MinMax "
            "ranges from training images through the deployment's preprocessing), every seed "
            "of every model; test macro-F1 through ONNX Runtime for both; the difference is "
            "paired by seed (mean ± sd [95 % interval]). Latency and size of the median run, "
            f"int8 / fp32, ONNX Runtime, {metrics.model.speed.threads} thread(s), timed "
            "interleaved in one process.", "",
            _table(["model", "format", "test macro-F1", "int8 - fp32", "latency ratio (batch 1)",
                    "latency ratio (batch 64)", "size ratio", "bytes", ""], rows), "",
            *[f"{n}\n" for n in notes]]


def estimate_text(values: list[float]) -> str:
    return estimate(values).text() if values else ""


def _candidates_section(metrics: FinalResult) -> list[str]:
    if not metrics.candidates:
        return []
    rows = [[f"#{c.number}", c.why, c.search_f1, c.search_score, c.latency_ratio,
             c.val_f1.text(), c.rank_value] for c in metrics.candidates]
    return ["### Top-k re-evaluation", "",
            f"The {len(rows)} candidates with distinct architectures retrained on the training "
            f"split with {metrics.seeds} fresh seed(s) each and judged on validation; the best "
            "by the objective of the mean goes to the final training (first row).", "",
            _table(["trial", "why", "search val F1", "search score", "latency ratio",
                    "val macro-F1 over seeds", "objective (lower is better)"], rows), ""]


MODEL_HEADER = ["model", "macro-F1", "accuracy", "ORT ms", "eager ms", "latency ratio",
                "params", "MACs", "score"]


def _chosen_section(metrics: FinalResult) -> list[str]:
    chosen, m = metrics.chosen, metrics.model
    return [
        "## Chosen trial", "",
        f"Trial #{chosen.number} ({chosen.state.name}), chosen by {chosen.why}. "
        f"Retrained from scratch on train + validation for {metrics.epochs} epochs at "
        f"{metrics.input_size} px; tested on the {metrics.test_source} test split "
        f"({m.test_images} images).", "",
        _table(["in the search", "score", "val macro-F1", "latency ratio", "epochs"],
               [[f"trial #{chosen.number}", chosen.score, chosen.f1, chosen.latency_ratio,
                 chosen.epochs_done]]), ""]


def _models_section(metrics: FinalResult) -> list[str]:
    return [
        "## Test metrics, searched model against baselines", "",
        f"{metrics.seeds} seed(s) per model (initialisation, data order, augmentation), each "
        "trained from scratch on train + validation; macro-F1 and accuracy as mean ± standard "
        "deviation [95 % interval]. Exports and the full benchmark below are of each model's "
        "median run.", "",
        _table(SEEDS_HEADER, [seeds_row(r, metrics.f1_ref) for r in metrics.models]), "",
        *[f"Warning: {r.name} did not train (training loss "
          f"{r.runs[0].training.first_loss:.3f} at epoch 1, "
          f"{r.runs[0].training.last_loss:.3f} at the end, seed {r.runs[0].seed}): flagged, "
          "not counted as a comparison.\n" for r in metrics.models if not r.trained],
        *([f"{metrics.taken_over} of this job's {metrics.trainings} trainings were taken over "
           f"from `{metrics.reused_from}` (`--reuse-from`: the same net, recipe, seed and "
           "rows, trained there); their time is not this job's.", ""]
          if metrics.reused_from else [])]


def _median_runs_section(metrics: FinalResult) -> list[str]:
    m = metrics.model
    return [
        "### The median runs", "",
        _table(MODEL_HEADER, [model_row("searched", m)]
               + [model_row(name, b) for name, b in metrics.baselines.items()]), "",
        "Latency: CPU, batch 1, "
        f"{m.speed.threads} thread(s), median; latency ratio against the reference "
        f"`{metrics.reference}` measured in the same run. score = 0.5 x latency ratio + "
        f"sigmoid(20 x ({metrics.f1_ref} - F1)), lower is better.", "",
        _table(["metric", "value"], [
            ["TorchScript ms (CPU)", m.speed.cpu.torchscript_ms],
            ["eager batch 64, img/s", m.speed.cpu.eager_batch64_img_s],
            ["ONNX Runtime batch 64, img/s", m.speed.cpu.onnxruntime_batch64_img_s],
            ["size (bytes)", m.costs.size_bytes],
            ["submit time: whole test set at batch 1, s", m.submit.seconds],
            ["competition score (0.5 x submit / 43.16 + sigmoid)", m.scores.competition_score],
            *([["CUDA eager ms", m.speed.cuda.eager_ms]] if m.speed.cuda else []),
        ]), ""]


def _per_class_section(metrics: FinalResult, plots: dict[str, str]) -> list[str]:
    return [
        "## Per class (test)", "",
        _table(["class", "F1 over seeds", "precision (median run)", "recall (median run)",
                "support"],
               [[c, metrics.models[0].per_class_f1[c].text(3), v.precision, v.recall, v.support]
                for c, v in metrics.model.test.per_class.items()]), "",
        f"![confusion matrix]({plots['confusion']})", ""]


def _search_section(trials: list[StudyTrial], plots: dict[str, str], ledger: dict
                    ) -> list[str]:
    states = Counter(t.state.name for t in trials)
    wall = sum(t.wall_seconds for t in trials)
    epochs = sum(t.epochs_done for t in trials)
    return [
        "## Search summary", "",
        _table(["trials", *sorted(states), "trial-epochs", "trial wall time (s)"],
               [[len(trials), *[states[s] for s in sorted(states)], epochs, wall]]), "",
        ledger_line(ledger) + ".", "",
        f"![Pareto front]({plots['pareto']})", "",
        f"![learning curves]({plots['curves']})", "",
        f"![final trainings]({plots['retrain']})", ""]


def write_report(path: Path, metrics: FinalResult, trials: list[StudyTrial],
                 plots: dict[str, str], ledger: dict) -> Path:
    parts = [f"# litesearch final report: study `{metrics.study}`", "",
             *_claim_section(metrics), *_chosen_section(metrics),
             *_candidates_section(metrics),
             *_models_section(metrics), *_comparison_section(metrics),
             *_recipe_section(metrics), *_median_runs_section(metrics),
             *_int8_section(metrics), *_per_class_section(metrics, plots),
             *_search_section(trials, plots, ledger)]
    path.write_text("\n".join(parts))
    return path


def write_report_with_plots(folder: Path, metrics: FinalResult, trials: list[StudyTrial],
                            chosen: StudyTrial, classes: list[str], ledger: dict) -> Path:
    """The plots, then report.md beside them (which shows them)."""
    plots = {"pareto": plot_pareto(trials, chosen, folder / "pareto.png", metrics.models),
             "curves": plot_curves(trials, folder / "learning_curves.png"),
             "retrain": plot_retrain(metrics.models, folder / "retrain_curves.png"),
             "confusion": plot_confusion(metrics.model.test.confusion, classes,
                                         folder / "confusion.png")}
    return write_report(folder / "report.md", metrics, trials,
                        {k: v.name for k, v in plots.items()}, ledger)
