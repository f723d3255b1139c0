"""`actlab-serve checkpoint=<folder>`: a policy served over openpi's websocket protocol (see protocol.py).

- Safe by default: binds 127.0.0.1; with `serve.api_key` (or $ACTLAB_API_KEY) a connection needs the header
  `Authorization: Api-Key <key>` (what openpi-client sends), and binding another address without a key
  warns; frames above `serve.max_message_mb` close that connection; a malformed request gets an error
  frame naming the problem and the connection stays open; so does a request whose actions would be unsafe
  (NaN, Inf, a wrong length: actlab.features.check_action), which are never sent. A request is refused
  while it is read when it holds more keys, longer lists or deeper nesting than the policy's features can
  need (protocol.request_limits), so a hostile frame costs neither memory nor the other clients' time.
- `GET /healthz` on the same port answers 200 (no key needed: load balancers probe it).
- Every connection has its own episode state (the observation history, with n_obs_steps > 1); requests of
  all connections are answered one at a time by the main thread (actlab.deploy.inference) while the
  network runs on another, so a slow or broken client blocks nobody else.
- The model is warmed up (compiled, with policy.compile=true) before the port opens; SIGTERM and Ctrl-C
  close the server cleanly.
"""

from __future__ import annotations

import asyncio
import http
import logging
import signal
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from actlab.config.entry_points import api_key as read_api_key
from actlab.config.entry_points import checkpoint_command
from actlab.deploy.access import KeyRefusals, check_binding, key_matches
from actlab.deploy.inference import SameThreadExecutor
from actlab.deploy.protocol import (
    UNSAFE_ACTIONS,
    ProtocolError,
    UnsafeActions,
    apply_key_map,
    key_name,
    metadata,
    packb,
    request_limits,
    unpackb,
)
from actlab.errors import ActlabError
from actlab.export.acting import load_acting_policy
from actlab.features import ObservationError, check_action, to_policy_batch
from actlab.policy import ACTPolicy
from actlab.policy.selection import ObservationHistory

log = logging.getLogger("actlab")


class PolicySession:
    """One connection's episode: its observation history, and the policy it asks."""

    def __init__(self, policy: ACTPolicy):
        self.policy = policy
        self.history = ObservationHistory(policy.config.n_obs_steps, list(policy.config.input_features))
        self.unsafe_replies = 0

    def reset(self) -> None:
        self.history.reset()

    @torch.inference_mode()
    def infer(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, float]:
        """The (chunk, A) float32 action chunk for one observation, and the milliseconds it took."""
        started = time.perf_counter()
        chunk = self.policy.predict_action_chunk(self.history.observe(batch))[0]
        return chunk.float().cpu().numpy(), 1000 * (time.perf_counter() - started)


class PolicyServer:
    def __init__(
        self,
        policy: ACTPolicy,
        host: str = "127.0.0.1",
        port: int = 8000,
        api_key: str | None = None,
        max_message_mb: float = 64,
        key_map: dict[str, Any] | None = None,
        actions_key: str = "actions",
        executor: Executor | None = None,
    ):
        self.policy = policy
        self.host, self.port = host, port
        self.api_key = api_key
        self.max_size = int(max_message_mb * 2**20)
        self.key_map = key_map or {}
        self.actions_key = actions_key
        self.metadata = metadata(policy, package_version("actlab"), actions_key)
        # what a request may hold: a hostile frame is refused before it costs memory or time
        self.limits = request_limits(policy.config.input_features, self.key_map)
        # Where inference runs: a thread of its own by default; `run` uses the main thread instead.
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.device = next(policy.parameters()).device
        self.bound_port: int | None = None
        self.refusals = KeyRefusals()

    def warm_up(self, calls: int = 3) -> float:
        """Runs the policy on zero observations (allocations, oneDNN kernels, torch.compile); returns the
        last call's milliseconds."""
        observation = {}
        for key, feature in self.policy.config.input_features.items():
            shape = (*feature.shape[1:], feature.shape[0]) if feature.type == "VISUAL" else feature.shape
            observation[key] = np.zeros(shape, np.uint8 if feature.type == "VISUAL" else np.float32)
        session = PolicySession(self.policy)
        for _ in range(calls):
            _, ms = session.infer(to_policy_batch(observation, self.policy.config.input_features, self.device))
            session.reset()
        return ms

    # ------------------------------------------------------------------------------------- connections
    async def process_request(self, connection, request):
        """Before the websocket handshake: /healthz, and the API key (exactly one `Authorization` header,
        compared in constant time); an address that keeps sending wrong keys waits longer for each answer."""
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if not self.api_key:
            return None
        address = str(connection.remote_address[0])
        if key_matches(request.headers.get_all("Authorization"), self.api_key):
            self.refusals.forget(address)
            return None
        delay = self.refusals.add(address)
        await asyncio.sleep(delay)
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")

    async def handle(self, websocket) -> None:
        import websockets

        session = PolicySession(self.policy)
        loop = asyncio.get_running_loop()
        host, port = websocket.remote_address[:2]
        client = f"{host}:{port}"
        log.info(f"client {client} connected")
        try:
            await websocket.send(packb(self.metadata))
            async for message in websocket:
                try:
                    reply = await self.answer(message, session, loop)
                except (ProtocolError, ObservationError, UnsafeActions) as e:
                    await websocket.send(f"error: {e}")
                    continue
                except Exception as e:  # a request nobody foresaw: answered too, never a closed connection
                    log.exception(f"client {client}: a request failed")
                    await websocket.send(f"error: the server could not answer this request ({type(e).__name__}: {e})")
                    continue
                await websocket.send(reply)
        except websockets.ConnectionClosed:
            pass
        log.info(f"client {client} disconnected")

    async def answer(self, message: bytes | str, session: PolicySession, loop) -> bytes:
        if isinstance(message, str):
            raise ProtocolError("expected a binary msgpack frame, got text")
        request = unpackb(message, self.limits)
        if not isinstance(request, dict):
            raise ProtocolError(f"expected a map of observations, got {type(request).__name__}")
        request = {key_name(k): v for k, v in request.items()}
        if request.get("reset") is True:
            session.reset()
            return packb({"reset": True})
        observation = apply_key_map(request, self.key_map)
        batch = to_policy_batch(observation, self.policy.config.input_features, self.device)
        actions, infer_ms = await asyncio.wrap_future(self.executor.submit(session.infer, batch))
        problem = check_action(actions, self.policy.config.action_feature.shape[0])
        if problem:
            session.unsafe_replies += 1
            if session.unsafe_replies == 1:  # once per connection: a broken policy would fill the log
                log.warning(f"the policy's action chunk {problem}: answered with an error frame instead")
            raise UnsafeActions(f"{UNSAFE_ACTIONS}: the policy's action chunk {problem}")
        return packb({self.actions_key: actions, "server_timing": {"infer_ms": infer_ms}})

    async def serve(self, stop: asyncio.Future, ready: asyncio.Future | None = None) -> None:
        """Serves until `stop` is done."""
        import websockets.asyncio.server

        logging.getLogger("websockets").setLevel(logging.WARNING)  # one line per connection is ours
        async with websockets.asyncio.server.serve(
            self.handle,
            self.host,
            self.port,
            compression=None,
            max_size=self.max_size,
            process_request=self.process_request,
        ) as server:
            self.bound_port = server.sockets[0].getsockname()[1]
            inputs = ", ".join(self.policy.config.input_features)
            log.info(f"Serving the policy ({inputs} -> action chunks) on ws://{self.host}:{self.bound_port}")
            if ready is not None:
                ready.set_result(self.bound_port)
            await stop
            log.info("Shutting down")
        self.executor.shutdown(wait=True)

    def run(self) -> None:
        """Serves until SIGTERM or Ctrl-C: the network on a thread of its own, inference on this thread."""
        executor = self.executor = SameThreadExecutor()
        loop = asyncio.new_event_loop()
        stop, started, finished = loop.create_future(), loop.create_future(), threading.Event()
        errors: list[BaseException] = []

        def network() -> None:
            try:
                loop.run_until_complete(self.serve(stop, started))
            except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
                errors.append(e)
            finally:
                finished.set()

        def shut_down(*_) -> None:
            loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

        previous = {sig: signal.signal(sig, shut_down) for sig in (signal.SIGTERM, signal.SIGINT)}
        thread = threading.Thread(target=network, name="network", daemon=True)
        thread.start()
        try:
            executor.run_until(finished)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            thread.join()
            loop.close()
        if errors:
            raise errors[0]


def serve(cfg: DictConfig) -> None:
    """The Hydra task of actlab-serve."""
    options = cfg.serve
    api_key = read_api_key(options.api_key, options.api_key_file)
    check_binding(options.host, api_key)
    policy = load_acting_policy(cfg, options.device)
    server = PolicyServer(
        policy,
        options.host,
        options.port,
        api_key,
        options.max_message_mb,
        dict(options.key_map or {}),
        options.actions_key,
    )
    ms = server.warm_up()
    runtime = "onnx" if policy.chunk_backend is not None else f"{cfg.policy.precision}, compile={cfg.policy.compile}"
    log.info(f"Warmed up: {ms:.1f} ms per chunk ({runtime})")
    try:
        server.run()
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise ActlabError(f"serve.host={options.host} serve.port={options.port}: cannot listen ({e})") from None


main = checkpoint_command("serve", serve)


if __name__ == "__main__":
    main()
