"""Training: a thin LightningModule, callbacks, folder checkpoints, and the `train(cfg)` pipeline."""
