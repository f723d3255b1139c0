"""actlab's sweeper for Hydra (Hydra finds sweepers in the `hydra_plugins` namespace package)."""
