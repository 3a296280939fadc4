#!/usr/bin/env bash
# The claim run of #23 for one operating point, as a user runs it overnight on a laptop: the
# 60-trial search, then the final job with 10 seeds of the searched net and of each baseline
# (each baseline also tried at 96 px, and under the accurate point the searched net too, up
# to the size MobileNetV3-Small ships at). Resumable: run the same command again after a stop
# (Ctrl+C, a reboot) and it goes on where it was (the search with --resume, the final job
# from its per-training checkpoints). Every segment's wall time goes to $OUT/stages.tsv, so
# the whole job's time is their sum even across stops (benchmarks/night_clock.py: a segment
# killed with its machine counts up to its last minute); the final job's results are copied to
# benchmarks/results/night/<data>-<point>/ when it ends, with summary.md
# (benchmarks/night_summary.py: the report's claim and tables, the wall time). What the run
# needs to go on (the search's study, the rung state, the final job's trainings.jsonl) is
# kept there every 10 minutes and at each segment's end (benchmarks/night_keep.py): commit
# it, and a run folder lost with its machine is restored from it on the next run (the
# search goes on from its study; the final job takes each finished training from the kept
# trainings.jsonl and trains again only each model's median run, for the weights it ships).
# No int8: it would need every seed's weights, which a lost run folder takes with it, and
# neither claim is about int8.
#
#   bash benchmarks/night.sh accurate                      # fmnist-taco6
#   bash benchmarks/night.sh fast /path/to/crops           # any TACO-shaped ImageFolder
#   SEEDS=10 BASELINE_SIZES=96 OUT=runs/x bash benchmarks/night.sh accurate
#   NAME=taco-standin bash benchmarks/night.sh fast /work/data/taco-standin/crops
#   bash benchmarks/night.sh accurate && bash benchmarks/night.sh fast
#       # a chain of runs: after a stop, run the whole chain again; a finished run is skipped
#       # NAME names the run, study and results folder (default: the data folder's name)
#   REUSE_FROM=runs/night-fmnist-taco6-accurate OUT=runs/y bash benchmarks/night.sh fast
#       # another run's finished trainings of the same net, recipe, seed and rows are taken
#       # over instead of repeated (final.py --reuse-from), and each baseline is also tried
#       # with the recipe and size that run chose for it: where that wins again, its seeds
#       # there are taken over (a baseline's own recipes keep this run's searched pipeline)
set -euo pipefail
point=${1:?usage: night.sh fast|accurate [DATA]}
data=${2:-../shared/data/fmnist-taco6}
name=${NAME:-$(basename "$(realpath "$data")")}
out=${OUT:-runs/night-$name-$point}
study=night-$name-$point
seeds=${SEEDS:-10}
sizes=${BASELINE_SIZES:-96}
baselines=mobilenet_v3_small,shufflenet_v2_x0_5
tick=${TICK:-60}  # seconds between the clock's ticks; a keep every 10 ticks
reuse=()
[ -n "${REUSE_FROM:-}" ] && reuse=(--reuse-from "$REUSE_FROM")
results=${RESULTS:-benchmarks/results/night/$name-$point}  # committed
mkdir -p "$out" "$results"

keep() { python benchmarks/night_keep.py keep "$out" "$results" || true; }
keeper=
trap '[ -z "$keeper" ] || kill "$keeper" 2>/dev/null || true' EXIT  # a stopped run's keeper too

# one line per segment in $out/stages.tsv: stage, start, end (UTC), seconds, exit status; the
# clock ticks every minute and what the run needs to go on is kept every 10 minutes
segment() {
  local stage=$1 rc=0
  shift
  python benchmarks/night_clock.py start "$out" "$stage"
  (trap 'exit 0' TERM  # after the tick or keep under way, which `stop` must not overtake
   i=0
   while :; do
     sleep "$tick" & wait $!
     python benchmarks/night_clock.py tick "$out" || true
     i=$((i + 1)); [ $((i % 10)) -ne 0 ] || keep
   done) &
  keeper=$!
  "$@" || rc=$?
  kill "$keeper" 2>/dev/null || true
  wait "$keeper" 2>/dev/null || true
  python benchmarks/night_clock.py stop "$out" "$rc"
  keep
  return "$rc"
}

# a run folder lost with its machine (a study kept, none here) goes on from what was kept
if [ ! -f "$out/study.db" ] && [ -f "$results/study.db" ] && [ -z "${LITESEARCH_STORAGE:-}" ]; then
  python benchmarks/night_keep.py restore "$out" "$results"
fi

if [ ! -f "$out/search.done" ]; then
  resume=()
  # Tune's state (an interrupted search), or only its study (a restored run folder)
  if [ -d "$out/ray/$study" ] || [ -f "$out/study.db" ]; then resume=(--resume); fi
  segment search python tune_jobs/search.py --data "$data" --point "$point" --study "$study" \
    --output "$out" "${resume[@]}"
  touch "$out/search.done"
  keep
fi
if [ -f "$out/trials.csv" ]; then cp "$out/trials.csv" "$results/"; fi  # every search that ended

# a finished final job is not assessed again when a chain of runs is re-run (delete
# final.done to redo it, e.g. after a change to the final job: its trainings are kept)
if [ ! -f "$out/final.done" ]; then
  segment final python tune_jobs/final.py --study "$study" --output "$out" \
    --baselines "$baselines" --seeds "$seeds" --baseline-sizes "$sizes" --no-int8 \
    "${reuse[@]}"
  touch "$out/final.done"
  keep
  cp "$out"/final/{metrics.json,report.md,pareto.png,retrain_curves.png} "$results/"
  python benchmarks/night_summary.py "$results"  # BENCHMARKS.md's section: $results/summary.md
fi
