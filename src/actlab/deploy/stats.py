"""What the control loop measures: tick jitter, missed deadlines, inference latency, underruns, the
watchdog; summarised into `deploy/stats.json`."""

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
    underruns: int = 0  # ticks with no planned action (the last one was repeated)
    late_actions: int = 0  # planned actions whose tick had passed when their chunk arrived
    watchdog: int = 0  # ticks at which no fresh action had arrived for max_latency

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
            "watchdog_ticks": self.watchdog,
        }
