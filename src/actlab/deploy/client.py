"""A Python client of the policy server (openpi's websocket + msgpack-numpy protocol, see protocol.py).

    with PolicyClient("ws://robot-pc:8000", api_key="...") as policy:
        print(policy.metadata["input_features"])
        chunk = policy.infer({"observation.state": state, "observation.images.top": rgb})["actions"]
        policy.reset()                                    # at every episode start

It speaks to any server of the protocol (actlab-serve, openpi's policy servers) and needs only numpy,
msgpack and websockets on the robot's side. With `timeout`, the opening handshake, the closing handshake
and every reply are waited for that long at most (TimeoutError); without, replies are waited for as long
as they take. (actlab-deploy's RemotePolicy adds reconnection on top.)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from actlab.deploy.protocol import UNSAFE_ACTIONS, packb, unpackb
from actlab.errors import ActlabError


class ServerError(ActlabError):
    """The server answered a request with an error frame (a text frame, as openpi's servers do)."""


class UnsafeReply(ServerError):
    """The server refused to send the policy's actions for a request (NaN, Inf, a wrong length)."""


class PolicyClient:
    def __init__(
        self, url: str, api_key: str | None = None, connect_timeout: float = 30.0, timeout: float | None = None
    ):
        """Connects, retrying a refused connection for `connect_timeout` seconds (0: one attempt)."""
        import websockets.sync.client

        self.url = url if url.startswith(("ws://", "wss://")) else f"ws://{url}"
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.connection = websockets.sync.client.connect(
                    self.url,
                    compression=None,
                    max_size=None,
                    additional_headers=headers,
                    open_timeout=timeout or 10,
                    close_timeout=timeout or 10,
                )
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise ActlabError(f"no policy server at {self.url} (connection refused)") from None
                time.sleep(0.2)
            except websockets.exceptions.InvalidStatus as e:
                status = e.response.status_code
                raise ActlabError(f"{self.url} refused the connection (HTTP {status}); is the API key right?") from None
            except OSError as e:
                raise ActlabError(f"cannot reach a policy server at {self.url} ({e})") from None
        try:
            self.metadata: dict[str, Any] = self._receive(timeout)
        except BaseException:
            self.connection.close()
            raise

    def infer(self, observation: dict[str, np.ndarray], timeout: float | None = None) -> dict[str, Any]:
        """The server's reply to one observation: {"actions": (chunk, A), "server_timing": {...}}."""
        self.connection.send(packb(observation))
        return self._receive(timeout)

    def reset(self, timeout: float | None = None) -> None:
        """Starts a new episode on the server (it forgets the observation history)."""
        self.connection.send(packb({"reset": True}))
        self._receive(timeout)

    def _receive(self, timeout: float | None = None) -> Any:
        message = self.connection.recv(timeout)
        if isinstance(message, str):
            text = message.removeprefix("error: ")
            raise (UnsafeReply if text.startswith(UNSAFE_ACTIONS) else ServerError)(f"{self.url}: {text}")
        return unpackb(message)

    def close(self, timeout: float | None = None) -> None:
        """Closes the connection, waiting up to `timeout` s (else the client's own) for the server's part of
        the closing handshake."""
        if timeout is not None:
            self.connection.close_timeout = timeout
        self.connection.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
