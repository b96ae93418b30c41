"""What machine a benchmark ran on (CPU model), for the figures it prints, and what its page cache holds unwritten."""

from __future__ import annotations

from pathlib import Path


def cpu_model(default: str = "") -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def dirty_kib() -> int:
    """The machine's dirty page cache (kB of /proc/meminfo "Dirty"; 0 where there is none to read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Dirty:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
