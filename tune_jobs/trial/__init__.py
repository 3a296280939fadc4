"""What one trial does: the search space (space), the Tune trainable (trainable), the
objective and budgets (objective), the training engine (engine) and the recipe shared with
the final job (recipe)."""
