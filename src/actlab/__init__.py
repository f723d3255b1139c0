"""actlab: Hydra-configured ACT training, evaluation and deployment."""
