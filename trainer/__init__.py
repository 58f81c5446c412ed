"""Training side of hpsearch: data, model, training loop, metrics. Knows nothing of Optuna or wandb."""
