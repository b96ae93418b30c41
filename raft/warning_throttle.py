"""A warning that may repeat fast is logged at most once per interval per key, with how many were held back."""

from __future__ import annotations

import logging
import time


class WarningThrottle:
    """Logs a warning per key at most once per interval, counting what it held back."""

    MAX_KEYS = 1024

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._seen: dict[object, list[float]] = {}

    def warn(self, key: object, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._interval_s:
            seen[1] += 1
            return
        if len(self._seen) >= self.MAX_KEYS:
            self._seen.clear()
        suppressed = int(seen[1]) if seen is not None else 0
        self._seen[key] = [now, 0]
        if suppressed:
            message += f" ({suppressed} similar in the last {self._interval_s:.0f} s not logged)"
        self._log.warning(message, *args, exc_info=exc_info)
