"""The final job (`tune_jobs/final.py`): options (its flags and `FinalOptions`), candidates
(which trials to retrain), runs (one training, resumable), batch (many at once, in a process
pool), recipes (the baselines' standard recipes), stats (means, intervals, verdicts), claims
(the operating point's claim and the seeds it needs), assess (benchmark on the test split),
export and meta (what ships), preprocess (a deployed model's image pipeline), quantize and int8
(int8 beside fp32), results (what it measured, as types), report (report.md and plots), job
(the phases, in order), remote (all of it as a Ray task on a GPU node). Kept free of imports so
that `predict.py` can read `meta` without torch."""

# in a final job's folder: every finished training, one JSON line each as it ends
# (runs.record); here, without imports, for the tools that read it beside a running job
TRAININGS = "trainings.jsonl"
