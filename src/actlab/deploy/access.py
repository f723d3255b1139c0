"""Who may reach a policy server: the API key compared in constant time, a growing wait for an address that
keeps sending wrong keys, and a warning when the server is reachable from other machines without a key."""

from __future__ import annotations

import hmac
import ipaddress
import logging

log = logging.getLogger("actlab")


def key_matches(authorization: list[str], api_key: str) -> bool:
    """Exactly one `Authorization: Api-Key <key>` header (what openpi-client sends), holding `api_key`."""
    expected = f"Api-Key {api_key}".encode()
    return len(authorization) == 1 and hmac.compare_digest(authorization[0].encode(), expected)


class KeyRefusals:
    """Wrong API keys per client address: the first `free` are answered at once, then each answer waits
    twice as long as the last, up to `longest` seconds (per connection: a guesser is slowed, a client with
    the right key never waits). Logged at the first refusal and every power of two; at most `addresses`
    addresses are remembered (the oldest forgotten first)."""

    def __init__(self, free: int = 3, first: float = 0.25, longest: float = 5.0, addresses: int = 4096):
        self.free, self.first, self.longest, self.addresses = free, first, longest, addresses
        self.counts: dict[str, int] = {}

    def add(self, address: str) -> float:
        """Counts a refusal; returns how long its answer waits."""
        count = self.counts.pop(address, 0) + 1
        self.counts[address] = count  # most recent last
        while len(self.counts) > self.addresses:
            del self.counts[next(iter(self.counts))]
        delay = 0.0 if count <= self.free else min(self.first * 2 ** (count - self.free - 1), self.longest)
        if count & (count - 1) == 0:
            log.warning(
                f"refused a connection from {address}: missing or wrong API key ({count} in a row"
                + (f"; answers now wait {delay:g} s)" if delay else ")")
            )
        return delay

    def forget(self, address: str) -> None:
        self.counts.pop(address, None)


def check_binding(host: str, api_key: str | None) -> None:
    """Warns when the policy would be reachable from other machines without a key."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not api_key:
        log.warning(
            f"serve.host={host} exposes the policy to other machines without an API key; set serve.api_key "
            "(or $ACTLAB_API_KEY) so only clients that know it can connect"
        )
