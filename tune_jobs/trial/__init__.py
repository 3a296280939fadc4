"""What one trial does: space (the search space), trainable (the Tune trainable), report (the
typed record a trial reports), replay (a trial that replays a learning-curve table), data
(what every trial shares), objective and score (costs, budgets, the score), engine (the
training engine) and recipe (the recipe shared with the final job)."""
