"""The jobs and what they share. Entry scripts (thin CLIs, each also `litesearch COMMAND`):
search, final, predict, dashboard, and cli (the `litesearch` command). The search job
(searchjob) and its pieces: config (the experiment YAML, validated), outcome (how a trial
ended and its study state), schedulers (ASHA and PASHA whose rungs survive a resume), pasha
(PASHA's stop rule), internals (every private Ray/Optuna name litesearch touches).
Sub-packages: trial (what one trial does), study (the study record), finaljob (retrain,
assess, export, report)."""
