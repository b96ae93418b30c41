"""Last-resort release of harness resources: at interpreter exit and on SIGTERM/SIGHUP (and SIGINT, also
when it was inherited ignored).

Context managers are the normal path. Everything that creates processes or
kernel objects also registers its close() here, so an exception that escapes
the runner, sys.exit, Ctrl-C (KeyboardInterrupt) and SIGTERM/SIGHUP (turned
into SystemExit, when their handler is still the default) release them too.
Only SIGKILL bypasses this; cleanup_stale() is the remedy for that.
Resources are closed newest first (processes before the network they live in).
"""

from __future__ import annotations

import atexit
import itertools
import signal
import sys
import threading
from collections.abc import Callable

_lock = threading.Lock()
_resources: dict[int, Callable[[], None]] = {}
_keys = itertools.count()
_installed_signals: dict[int, object] = {}
_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _SIGNALS:
        if sig not in _installed_signals and signal.getsignal(sig) is signal.SIG_DFL:
            _installed_signals[sig] = signal.signal(sig, _exit_on_signal)
    if signal.SIGINT not in _installed_signals and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Inherited ignored (a background job of a script): Ctrl-C, or `kill -INT`, must still clean up.
        _installed_signals[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)


def _restore_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, previous in list(_installed_signals.items()):
        if signal.getsignal(sig) in (_exit_on_signal, signal.default_int_handler):
            signal.signal(sig, previous)  # type: ignore[arg-type]
        del _installed_signals[sig]


def register(close: Callable[[], None]) -> int:
    """Make sure close() runs before the interpreter exits; returns a key for unregister."""
    with _lock:
        key = next(_keys)
        _resources[key] = close
    _install_signal_handlers()
    return key


def unregister(key: int) -> None:
    with _lock:
        _resources.pop(key, None)
        empty = not _resources
    if empty:
        _restore_signal_handlers()


def close_all() -> None:
    """Close every registered resource, newest first; errors are reported, not raised."""
    while True:
        with _lock:
            if not _resources:
                return
            key = max(_resources)
            close = _resources.pop(key)
        try:
            close()
        except Exception as exc:  # keep going: the other resources still need releasing
            print(f"jepsen_raftka teardown: {close!r} failed: {exc}", file=sys.stderr)


atexit.register(close_all)
