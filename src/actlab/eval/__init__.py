"""Using a trained policy: `actlab-eval` (simulator rollouts with videos and worker processes, dataset replay
with metrics and plots) and the pieces the training run's own evaluation shares with it."""
