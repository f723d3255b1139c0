"""The console scripts' mains of `actlab-serve` and `actlab-deploy` (and `python -m actlab.deploy`). They
import only the config layer, so that `--help` and config errors answer before torch, LeRobot or a simulator
is imported; the commands themselves (actlab.deploy.server.serve, actlab.deploy.cli.deploy) are imported when
the config is good. actlab-serve first checks that it can listen on its port: a port already in use is one
line at once, not after the policy has loaded."""

from __future__ import annotations

import errno
import socket
from typing import Any

from omegaconf import DictConfig

from actlab.config.entry_points import checkpoint_command
from actlab.errors import ActlabError


def check_port(host: str, port: int) -> None:
    """Binds (and releases) every address of `host` on `port` as the server will, or one line saying why not."""
    if not port:  # any free port
        return
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server sets it
                probe.bind(address)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ActlabError(
                f"serve.port={port}: already in use on {host} (another server listens there); stop it or pick "
                "another serve.port (0 = any free port)"
            ) from None
        raise ActlabError(f"serve.host={host} serve.port={port}: cannot listen ({e})") from None


def serve(cfg: DictConfig) -> None:
    check_port(cfg.serve.host, cfg.serve.port)
    from actlab.deploy import server

    server.serve(cfg)


def deploy(cfg: DictConfig) -> dict[str, Any]:
    from actlab.deploy import cli

    return cli.deploy(cfg)


serve_main = checkpoint_command("serve", serve)
deploy_main = checkpoint_command("deploy", deploy)
