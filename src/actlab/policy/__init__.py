"""The ACT policy: a plain nn.Module usable with no Lightning and no Hydra (deployment imports this only)."""

from actlab.config.policy import ACTPolicyConfig
from actlab.features import PolicyFeature
from actlab.policy.policy import ACTPolicy

__all__ = ["ACTPolicy", "ACTPolicyConfig", "PolicyFeature"]
