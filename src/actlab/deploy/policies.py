"""The policies the control loop asks for chunks: the checkpoint's in this process, or one served by
actlab-serve. Both say what the loop needs in `info` (the server's metadata frame: chunk_size,
n_action_steps, temporal_ensemble_coeff, action_range, output_features, ...); the loop chooses actions the
same way for both (actlab.policy.selection).

`chunk()` either returns a chunk or raises NoChunk (the server is unreachable, or refused to send unsafe
actions): the loop counts it as no fresh action and its watchdog decides. A `remote` policy's chunks are
always requested off the loop's thread, and every network wait has a deadline (`control.request_timeout`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from actlab.deploy.protocol import metadata
from actlab.errors import ActlabError, reason
from actlab.features import to_policy_batch
from actlab.policy.selection import ObservationHistory

log = logging.getLogger("actlab")

# What must stay the same when the client reconnects: the loop's queue and checks were built from these.
SAME_POLICY_KEYS = ("input_features", "output_features", "chunk_size", "n_action_steps", "action_range")
QUIET_LOG_S = 30.0  # once attempts are backoff_max apart, a failed one is logged at most this often


class NoChunk(Exception):
    """A chunk request that brought no chunk the loop may use; it holds (or stops) and asks again."""


class Disconnected(NoChunk):
    """The policy server cannot be reached now (lost, hung, or reconnecting)."""


class RejectedChunk(NoChunk):
    """The server refused to send the policy's actions (they failed its check: NaN, Inf, a wrong length)."""


class LocalPolicy:
    """The checkpoint's policy in this process."""

    remote = False

    def __init__(self, policy):
        from importlib.metadata import version

        self.policy = policy
        self.info = metadata(policy, version("actlab"))
        self.history = ObservationHistory(policy.config.n_obs_steps, list(policy.config.input_features))
        self.device = next(policy.parameters()).device

    def reset(self) -> None:
        self.history.reset()

    def observe(self, observation: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Every tick: the network's input for this observation (with n_obs_steps > 1, the recent ones)."""
        return self.history.observe(to_policy_batch(observation, self.policy.config.input_features, self.device))

    @torch.inference_mode()
    def chunk(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        return self.policy.predict_action_chunk(inputs)[0].float().cpu().numpy()

    def close(self) -> None:
        pass


class RemotePolicy:
    """A policy served by actlab-serve (or any server of its protocol). With n_obs_steps > 1 the server's
    history holds the observations it was sent, one per chunk, not one per tick.

    `chunk()` runs on the loop's request thread. A reply that does not come within `timeout` seconds, or a
    connection that closes, drops the connection (Disconnected); with `reconnect`, the next requests try to
    connect again, one attempt each, `backoff` (min, max) seconds apart, doubling; failed attempts are logged
    while the delay grows, then every QUIET_LOG_S seconds.
    After a reconnection, and at every episode start, the server is sent a reset before the next
    observation, so its history never mixes two connections or two episodes."""

    remote = True

    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout: float = 2.0,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 2.0),
    ):
        from actlab.deploy.client import PolicyClient

        self.url, self.api_key, self.timeout, self.reconnect = url, api_key, timeout, reconnect
        self.backoff = backoff
        self.client: PolicyClient | None = PolicyClient(url, api_key, timeout=timeout)
        self.info = self.client.metadata
        self.needs_reset = False
        self.closed = False
        self.reconnects = 0
        self.lost_at = self.next_attempt = self.logged_at = 0.0
        self.attempts, self.delay = 0, backoff[0]

    def reset(self) -> None:
        """A new episode: the server is told before the next observation (no network I/O here)."""
        self.needs_reset = True

    def observe(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return observation

    def chunk(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        import websockets

        from actlab.deploy.client import UnsafeReply

        client = self._connection()
        try:
            if self.needs_reset:
                self.needs_reset = False
                client.reset(self.timeout)
            reply = client.infer(observation, self.timeout)
        except UnsafeReply as e:
            raise RejectedChunk(str(e)) from None
        except (OSError, websockets.ConnectionClosed) as e:  # TimeoutError included: a silent server
            self._lost(client, e)
            raise Disconnected(f"lost the policy server at {self.url}") from None
        actions = reply.get(self.info.get("actions_key", "actions")) if isinstance(reply, dict) else None
        if not isinstance(actions, np.ndarray):
            raise ActlabError(f"{self.url} replied without an array of actions ({type(actions).__name__})")
        return actions.astype(np.float32)

    def _connection(self):
        from actlab.deploy.client import PolicyClient

        if self.client is not None:
            return self.client
        if self.closed or not self.reconnect:
            raise Disconnected(f"no connection to {self.url} (control.reconnect={self.reconnect})")
        if time.monotonic() < self.next_attempt:
            raise Disconnected(f"reconnecting to {self.url}")
        try:
            client = PolicyClient(self.url, self.api_key, connect_timeout=0, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - refused, timed out, closed, HTTP 5xx: all mean "try later"
            now = time.monotonic()
            self.attempts += 1
            self.next_attempt = now + self.delay
            if self.delay < self.backoff[1] or now - self.logged_at >= QUIET_LOG_S:  # each, then now and then
                self.logged_at = now
                log.warning(
                    f"reconnecting to {self.url} failed ({reason(e)}; {self.attempts} attempts in "
                    f"{now - self.lost_at:.1f} s); next attempt in {self.delay:.1f} s"
                )
            self.delay = min(2 * self.delay, self.backoff[1])
            raise Disconnected(f"reconnecting to {self.url}") from None
        changed = [k for k in SAME_POLICY_KEYS if client.metadata.get(k) != self.info.get(k)]
        if changed:
            client.close()
            raise ActlabError(f"the policy server at {self.url} came back with another policy ({', '.join(changed)})")
        self.client, self.needs_reset, self.delay = client, True, self.backoff[0]
        self.reconnects += 1
        log.info(f"reconnected to the policy server at {self.url} after {time.monotonic() - self.lost_at:.1f} s")
        return client

    def _lost(self, client, error: BaseException) -> None:
        self.client, self.lost_at, self.attempts = None, time.monotonic(), 0
        self.next_attempt = self.lost_at + self.delay
        if not self.closed:
            then = "reconnecting" if self.reconnect else "not reconnecting (control.reconnect=false)"
            log.warning(f"lost the policy server at {self.url} ({reason(error)}); {then}")
        try:
            client.close()  # bounded by the timeout: a silent server does not answer the closing handshake
        except Exception:  # noqa: BLE001, S110 - it is gone either way
            pass

    def close(self) -> None:
        self.closed = True
        if self.client is not None:
            self.client.close(timeout=min(self.timeout, 0.5))  # the server may be the silent one
