"""A Python client of the policy server (openpi's websocket + msgpack-numpy protocol, see protocol.py).

    with PolicyClient("ws://robot-pc:8000", api_key="...") as policy:
        print(policy.metadata["input_features"])
        chunk = policy.infer({"observation.state": state, "observation.images.top": rgb})["actions"]
        policy.reset()                                    # at every episode start

It speaks to any server of the protocol (actlab-serve, openpi's policy servers) and needs only numpy,
msgpack and websockets on the robot's side.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from actlab.deploy.protocol import packb, unpackb
from actlab.errors import ActlabError


class ServerError(ActlabError):
    """The server answered a request with an error frame (a text frame, as openpi's servers do)."""


class PolicyClient:
    def __init__(self, url: str, api_key: str | None = None, connect_timeout: float = 30.0):
        import websockets.sync.client

        self.url = url if url.startswith(("ws://", "wss://")) else f"ws://{url}"
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.connection = websockets.sync.client.connect(
                    self.url, compression=None, max_size=None, additional_headers=headers, open_timeout=10
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
        self.metadata: dict[str, Any] = self._receive()

    def infer(self, observation: dict[str, np.ndarray]) -> dict[str, Any]:
        """The server's reply to one observation: {"actions": (chunk, A), "server_timing": {...}}."""
        self.connection.send(packb(observation))
        return self._receive()

    def reset(self) -> None:
        """Starts a new episode on the server (it forgets the observation history)."""
        self.connection.send(packb({"reset": True}))
        self._receive()

    def _receive(self) -> Any:
        message = self.connection.recv()
        if isinstance(message, str):
            raise ServerError(f"{self.url}: {message.removeprefix('error: ')}")
        return unpackb(message)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
