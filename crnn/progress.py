"""Progress of the long stages (simulate, dataset, evaluate, predict; training has its epoch lines).

One :class:`Progress` per piece of work with a known or unknown total. Where stderr is a terminal it
draws a one-line bar that it redraws in place (at most every :data:`BAR_INTERVAL_S`); elsewhere (a
Snakemake log, a SLURM job) it writes a log line with count/total, rate and time left when the
work has advanced by another :data:`LOG_FRACTION` of the total or :data:`LOG_INTERVAL_S` have
passed since the last line, whichever comes first, and never within :data:`MIN_LOG_GAP_S` of the
previous line (so quick work writes no progress lines at all, only its stage's summary line).
No dependency beyond the standard library; importing this module imports no framework.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: seconds between two progress lines in a log, at most
LOG_INTERVAL_S = 10.0
#: fraction of the total between two progress lines in a log, at most
LOG_FRACTION = 0.1
#: seconds between two progress lines in a log, at least
MIN_LOG_GAP_S = 2.0
#: seconds between two redraws of the bar on a terminal, at least
BAR_INTERVAL_S = 0.1
#: width of the bar on a terminal, in characters
BAR_WIDTH = 30


def format_duration(seconds: float) -> str:
    """A duration for a person: ``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"`` (``"?"`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_rate(per_s: float, unit: str) -> str:
    """A rate with three significant figures: ``"1,230 traces/s"``, ``"4.56 traces/s"``."""
    if not math.isfinite(per_s) or per_s <= 0:
        return f"? {unit}/s"
    if per_s >= 100:
        return f"{per_s:,.0f} {unit}/s"
    return f"{per_s:.3g} {unit}/s"


def progress_text(done: int, total: int | None, elapsed_s: float, unit: str) -> str:
    """``"4,096/10,000 traces (41 %), 812 traces/s, 7 s left"``; without a total, count and rate only."""
    rate = done / elapsed_s if elapsed_s > 0 else math.nan
    if not total:
        return f"{done:,} {unit}, {format_rate(rate, unit)}"
    left = (total - done) / rate if rate > 0 else math.nan
    return (
        f"{done:,}/{total:,} {unit} ({100 * done / total:.0f} %), {format_rate(rate, unit)}, "
        f"{format_duration(left)} left"
    )


class Progress:
    """Count work done towards ``total`` (or an unknown total) and show it (see the module's text).

    ``what`` names the work in each line (e.g. ``"predict data/x.h5"``); ``logger`` receives the log
    lines (INFO); ``stream`` is where the bar is drawn, and whether it is a terminal decides between
    bar and log lines (``tty`` overrides that); ``clock`` is the time source in s (for tests).
    """

    def __init__(
        self,
        what: str,
        total: int | None,
        *,
        unit: str = "traces",
        logger: logging.Logger | None = None,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.log = logger or logging.getLogger("crnn")
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.clock = clock
        self.done = 0
        self.t0 = clock()
        self._last_line_t = self.t0
        self._last_line_done = 0
        self._last_bar_t = -math.inf
        self._drawn_done = -1
        self.lines = 0  # log lines written (for tests and callers that want to know)

    def elapsed_s(self) -> float:
        return self.clock() - self.t0

    def update(self, n: int) -> None:
        """Add ``n`` units of work done; draw the bar or write a log line when one is due."""
        self.done += n
        now = self.clock()
        if self.tty:
            if now - self._last_bar_t >= BAR_INTERVAL_S or (self.total and self.done >= self.total):
                self._draw(now)
            return
        since = now - self._last_line_t
        if since < MIN_LOG_GAP_S:
            return
        step = self.total * LOG_FRACTION if self.total else math.inf
        if since >= LOG_INTERVAL_S or self.done - self._last_line_done >= step:
            self.log.info("%s: %s", self.what, progress_text(self.done, self.total, now - self.t0, self.unit))
            self.lines += 1
            self._last_line_t, self._last_line_done = now, self.done

    def _draw(self, now: float) -> None:
        text = progress_text(self.done, self.total, now - self.t0, self.unit)
        if self.total:
            filled = int(BAR_WIDTH * min(1.0, self.done / self.total))
            text = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {text}"
        self.stream.write(f"\r{self.what}: {text}\033[K")
        self.stream.flush()
        self._last_bar_t = now
        self._drawn_done = self.done

    def close(self) -> None:
        """End the bar's line on a terminal (the caller logs its own summary line)."""
        if self.tty and self._last_bar_t > -math.inf:
            if self._drawn_done != self.done:  # the last state, once
                self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
