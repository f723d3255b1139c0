"""ACTPolicy: normalisation + the ACT network + loss + action selection, saved as a self-contained folder.

Inputs use LeRobot's batch keys: `observation.state` (B, S), `observation.environment_state` (B, E),
`observation.images.<camera>` (B, 3, H, W) as uint8 or float in [0, 1], and for training `action`
(B, chunk_size, A) with `action_is_pad` (B, chunk_size). Outputs are in the dataset's action units.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from actlab.config.policy import ACTPolicyConfig
from actlab.errors import ActlabError, reason
from actlab.features import ACTION, ACTION_IS_PAD, OBSERVATION_IS_PAD
from actlab.policy.act import ACT
from actlab.policy.files import CONFIG_NAME, WEIGHTS_NAME, check_weights, read_weights, write_policy_files
from actlab.policy.lerobot_folder import is_lerobot_policy, read_lerobot_policy
from actlab.policy.normalize import Normalizer
from actlab.policy.runtime import InferenceRuntime, resolve_precision
from actlab.policy.selection import ActionSelector


class ACTPolicy(nn.Module):
    def __init__(
        self,
        config: ACTPolicyConfig,
        stats: dict[str, dict[str, object]] | None = None,
        load_backbone_weights: bool = True,
    ):
        super().__init__()
        self.config = config
        self.model = ACT(config, load_backbone_weights=load_backbone_weights)
        self.image_keys = list(config.image_features)
        if stats is not None and self.image_keys and self.model.backbone.image_stats is not None:
            # The backbone's weights expect their own input normalisation (ImageNet, CLIP).
            mean, std = self.model.backbone.image_stats
            fixed = {"mean": torch.tensor(mean).view(3, 1, 1), "std": torch.tensor(std).view(3, 1, 1)}
            stats = {**stats, **{key: fixed for key in self.image_keys}}
        self.normalizer = Normalizer({**config.input_features, **config.output_features}, stats)
        self.loss_key = f"{config.loss}_loss"
        self.runtime = InferenceRuntime(self.model)  # a plain attribute: never part of the state dict
        self.inference_settings = ("fp32", False)
        self.chunk_backend = None  # computes predict_action_chunk's chunks instead of the runtime (use_chunk_backend)
        self.reset()

    def configure_inference(self, precision: str = "fp32", compile: bool = False) -> ACTPolicy:
        """How `predict_action_chunk` and `select_action` run (actlab.policy.runtime): `bf16` runs the image
        backbone and the transformer encoder in bfloat16 (the decoder, statistics and outputs stay float32),
        `auto` does so where the device runs bf16 natively; `compile` runs the network through torch.compile.
        The runtime, and the inference copies it holds, is kept when the settings are those it already has."""
        self.inference_settings = (precision, compile)  # `auto` is resolved again if the policy moves device
        precision = resolve_precision(precision, next(self.parameters()).device)
        if (self.runtime.precision, self.runtime.compile) != (precision, compile):
            self.runtime = InferenceRuntime(self.model, precision, compile)
        return self

    def use_chunk_backend(self, backend: Callable[[dict[str, Tensor]], Tensor] | None) -> ACTPolicy:
        """`backend(observation) -> (B, chunk_size, action_dim) chunk` in action units computes what
        `predict_action_chunk` returns, from the checked observation (e.g. ONNX Runtime: actlab.policy.onnx_backend);
        None: the policy's own inference runtime. Everything else (history, queue, ensembling) stays the policy's."""
        self.chunk_backend = backend
        return self

    # ----------------------------------------------------------------------------------- inputs
    def _normalized_inputs(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[Tensor]]:
        out = {}
        for key, feature in self.config.input_features.items():
            if key not in batch:
                raise ActlabError(f"the policy needs input '{key}', which the batch does not have")
            if feature.type != "VISUAL":
                out[key] = self.normalizer.normalize(key, batch[key].float())
        if OBSERVATION_IS_PAD in batch:
            out[OBSERVATION_IS_PAD] = batch[OBSERVATION_IS_PAD]
        images = [self.normalizer.normalize(key, _to_unit_float(batch[key])) for key in self.image_keys]
        return out, images

    def check_observation(self, observation: dict[str, Tensor], time_axis: bool) -> dict[str, Tensor]:
        """The observation's inputs as tensors on the policy's device, after checking that each is batched
        and has its feature's shape; anything else is one line naming the key and the expected shape."""
        device = next(self.parameters()).device
        out = dict(observation)
        for key, feature in self.config.input_features.items():
            if key not in observation:
                names = list(self.config.input_features)
                raise ActlabError(f"the observation has no '{key}'; the policy reads {names}")
            value = observation[key]
            if not isinstance(value, Tensor):
                value = torch.as_tensor(value)
            leading = ("batch", "n_obs_steps") if time_axis else ("batch",)
            expected = [*leading, *feature.shape]
            shape = list(value.shape)
            if len(shape) != len(expected) or shape[len(leading) :] != list(feature.shape):
                hint = "; add a batch dimension (e.g. value[None])" if shape == expected[1:] else ""
                raise ActlabError(f"observation '{key}' has shape {shape}; expected {expected}{hint}")
            out[key] = value.to(device)
        return out

    # ----------------------------------------------------------------------------------- training
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Loss dict: `loss` (to minimise), the action loss `l1_loss` or `l2_loss` (`model.loss`), and
        `kld_loss` when the VAE is on."""
        inputs, images = self._normalized_inputs(batch)
        target = self.normalizer.normalize(ACTION, batch[ACTION].float())
        inputs[ACTION] = target
        inputs[ACTION_IS_PAD] = batch[ACTION_IS_PAD]
        actions, mu, log_sigma_x2 = self.model(inputs, images)

        # Mean over the valid (not padded) steps only; LeRobot 0.4 divides by padded steps as well.
        valid = (~batch[ACTION_IS_PAD]).unsqueeze(-1).to(torch.float32)
        n_valid = valid.sum() * target.shape[-1]
        error = actions.float() - target
        per_element = error.abs() if self.config.loss == "l1" else error.square()
        action_loss = (per_element * valid).sum() / n_valid.clamp(min=1)
        losses = {self.loss_key: action_loss}
        loss = action_loss
        if mu is not None:
            kld = (-0.5 * (1 + log_sigma_x2 - mu.pow(2) - log_sigma_x2.exp())).sum(-1).mean()
            losses["kld_loss"] = kld
            loss = action_loss + self.config.kl_weight * kld
        losses["loss"] = loss
        return losses

    # ----------------------------------------------------------------------------------- inference
    @torch.inference_mode()
    def predict_action_chunk(self, observation: dict[str, Tensor]) -> Tensor:
        """(B, chunk_size, action_dim) actions in dataset units, from observations laid out as in training
        batches (with n_obs_steps > 1: a time axis and `observation_is_pad`). Puts the policy in eval mode."""
        self.eval()
        observation = self.check_observation(observation, time_axis=self.config.n_obs_steps > 1)
        if self.chunk_backend is not None:
            return self.chunk_backend(observation)
        inputs, images = self._normalized_inputs(observation)
        return self.normalizer.unnormalize(ACTION, self.runtime.predict(inputs, images))

    @torch.inference_mode()
    def select_action(self, observation: dict[str, Tensor]) -> Tensor:
        """The (B, action_dim) action to execute now, given the current (B, ...) observation: from the
        queue of the last chunk's first `n_action_steps` actions, or the temporal ensemble of every chunk
        when that is configured. With n_obs_steps > 1 the policy keeps the episode's recent observations."""
        observation = self.selector.observe(self.check_observation(observation, time_axis=False))
        if self.selector.needs_chunk:
            self.selector.add_chunk(self.predict_action_chunk(observation))
        return self.selector.pop()

    def new_selector(self) -> ActionSelector:
        """A fresh per-stream action state, for running several episodes through one batched network."""
        return ActionSelector(self.config, list(self.config.input_features))

    def reset(self) -> None:
        """Forget queued actions and observation history; call at the start of every episode."""
        self.selector = self.new_selector()

    # ----------------------------------------------------------------------------------- files
    def save_pretrained(self, directory: str | Path) -> None:
        """Writes `config.json` and `model.safetensors` (weights and normalisation statistics)."""
        write_policy_files(Path(directory), self.config, self.state_dict())

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        map_location: str | torch.device = "cpu",
        precision: str = "fp32",
        compile: bool = False,
    ) -> ACTPolicy:
        """An actlab policy folder, or a LeRobot ACT one (actlab.policy.lerobot_folder)."""
        directory = Path(directory)
        if is_lerobot_policy(directory):
            return cls._from_lerobot(directory).to(map_location).configure_inference(precision, compile)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise ActlabError(f"{directory} is not a policy folder: {name} is missing")
        policy = cls(ACTPolicyConfig.load(directory / CONFIG_NAME), load_backbone_weights=False)
        policy.load_weights(read_weights(directory / WEIGHTS_NAME, str(map_location)), directory / WEIGHTS_NAME)
        return policy.to(map_location).eval().configure_inference(precision, compile)

    @classmethod
    def _from_lerobot(cls, directory: Path) -> ACTPolicy:
        """A LeRobot ACT folder's policy (CPU, eval mode) that gives LeRobot's actions for the same observations."""
        config, stats, weights = read_lerobot_policy(directory)
        try:
            policy = cls(config, stats, load_backbone_weights=False)
        except ActlabError as e:  # statistics of another shape than the features in config.json
            raise ActlabError(f"{directory}: {e}") from None
        except (TypeError, ValueError, RuntimeError) as e:
            raise ActlabError(f"{directory / CONFIG_NAME}: cannot build ACT from it ({reason(e)})") from None
        expected = {k: v for k, v in policy.state_dict().items() if k.startswith("model.")}
        check_weights(expected, weights, directory / WEIGHTS_NAME)
        policy.model.load_state_dict({k.removeprefix("model."): v for k, v in weights.items()})
        return policy.eval()

    def load_weights(self, weights: dict[str, Tensor], source: Path) -> None:
        """`load_state_dict`, strict, with a one-line error naming the first key that does not match."""
        check_weights(self.state_dict(), weights, source)
        self.load_state_dict(weights)
        self.normalizer.check_finite(source)


def _to_unit_float(image: Tensor) -> Tensor:
    return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
