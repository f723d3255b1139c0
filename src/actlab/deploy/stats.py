"""What the control loop measures: tick jitter, missed deadlines, inference latency, underruns, what was
held or refused, the watchdog, reconnections; summarised into `deploy/stats.json`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoopStats:
    period: float
    jitter: list[float] = field(default_factory=list)  # s between a tick's due time and its start
    latency: list[float] = field(default_factory=list)  # s per chunk (inference, or the round trip)
    starts: list[float] = field(default_factory=list)
    spans: list[tuple[int, float]] = field(default_factory=list)  # per episode: (ticks, first to last start)
    missed: int = 0  # ticks that started after the next one was due
    skipped: int = 0  # ticks given up to catch up after an overrun
    underruns: int = 0  # ticks with no planned action (the chunk had not come)
    late_actions: int = 0  # planned actions whose tick had passed when their chunk arrived
    rejected_actions: int = 0  # actions that failed the last check (NaN, Inf, length, range): never sent
    rejected_chunks: int = 0  # chunks refused whole: by the server (unsafe actions), or of the wrong shape
    failed_requests: int = 0  # chunk requests that brought nothing (the server lost, hung or reconnecting)
    held: int = 0  # ticks without a fresh action that repeated the last safe one
    unsent: int = 0  # ticks without a fresh action before the episode's first: nothing was sent
    watchdog: int = 0  # ticks at which no fresh action had arrived for max_latency
    reconnects: int = 0  # connections to the policy server opened again after one was lost

    def summary(self) -> dict[str, float]:
        def pct(values: list[float], q: float) -> float:
            return 1000 * float(np.percentile(values, q)) if values else float("nan")

        intervals = sum(ticks - 1 for ticks, _ in self.spans)
        seconds = sum(span for _, span in self.spans)
        return {
            "ticks": len(self.starts),
            "target_hz": 1 / self.period,
            "achieved_hz": intervals / seconds if seconds > 0 else float("nan"),  # within episodes (not resets)
            "jitter_p50_ms": pct(self.jitter, 50),
            "jitter_p99_ms": pct(self.jitter, 99),
            "missed_deadlines": self.missed,
            "skipped_ticks": self.skipped,
            "inference_p50_ms": pct(self.latency, 50),
            "inference_p99_ms": pct(self.latency, 99),
            "chunks": len(self.latency),
            "underruns": self.underruns,
            "late_actions": self.late_actions,
            "rejected_actions": self.rejected_actions,
            "rejected_chunks": self.rejected_chunks,
            "failed_requests": self.failed_requests,
            "held_ticks": self.held,
            "unsent_ticks": self.unsent,
            "watchdog_ticks": self.watchdog,
            "reconnects": self.reconnects,
        }
