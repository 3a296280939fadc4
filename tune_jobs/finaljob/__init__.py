"""The final job (`tune_jobs/final.py`): choose a trial and retrain it (job), assess it on the
test split (assess), export it (export, meta), report it (report), or run it all as a Ray task
on a GPU node (remote). Kept free of imports so that `predict.py` can read `meta` without
torch."""
