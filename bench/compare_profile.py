"""py-spy on one raftka broker during a `bench.compare` workload, and a text summary of where its CPU goes.

`PySpyMeter` has the workload meter interface (start/stop around the measured
window): it records the broker with `py-spy record --format raw` (collapsed
stacks, non-blocking sampling) and measures the servers' CPU like `ServerMeter`.
`summarize` turns the collapsed stacks into: samples per code area (raftka
packages, aiohttp, asyncio, ...), the hottest functions by self time and by
inclusive time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.compare_systems import ServerMeter

REPO = Path(__file__).resolve().parents[1]
AREAS = (  # (marker in a frame's file path, area name); first match wins
    (str(REPO / "node") + "/", "raftka.node"),
    (str(REPO / "raft") + "/", "raftka.raft"),
    (str(REPO / "storage") + "/", "raftka.storage"),
    ("/aiohttp/", "aiohttp"),
    ("/yarl/", "yarl/multidict"),
    ("/multidict/", "yarl/multidict"),
    ("/asyncio/", "asyncio"),
    ("/uvloop/", "uvloop"),
    ("/cryptography/", "cryptography (transport AES-GCM)"),
    ("/orjson", "orjson"),
    ("/logging/", "logging"),
)


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise FileNotFoundError("py-spy not found: .venv/bin/pip install py-spy")
    return found


class PySpyMeter:
    def __init__(self, pid: int, out: Path, seconds: float, server_pids: list[int]) -> None:
        self.pid = pid
        self.out = out
        self.seconds = seconds
        self.cpu = ServerMeter(server_pids)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.cpu.start()
        self.proc = subprocess.Popen([py_spy(), "record", "--pid", str(self.pid), "--duration", str(int(self.seconds)),
                                      "--rate", "100", "--nonblocking", "--full-filenames", "--format", "raw",
                                      "-o", str(self.out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        self.cpu.stop()
        assert self.proc is not None
        _, err = self.proc.communicate(timeout=self.seconds + 60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")


def _frames(stack: str) -> list[tuple[str, str]]:
    """[(function, file)] from a collapsed stack 'f (file:line);g (file:line)'."""
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        out.append((name, where.rsplit(":", 1)[0]))
    return out


def _area(path: str) -> str:
    for marker, area in AREAS:
        if marker in path:
            return area
    return "other Python" if path.endswith(".py") else "native/other"


def _short(function: str, path: str) -> str:
    try:
        path = str(Path(path).relative_to(REPO))
    except ValueError:
        path = "/".join(Path(path).parts[-2:])
    return f"{function} ({path})"


def summarize(raw: Path, what: str, top: int = 15) -> str:
    stacks: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[stack] += int(count)
    total = sum(stacks.values()) or 1
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = _frames(stack)
        leaf = frames[-1]
        self_time[_short(*leaf)] += count
        areas[_area(leaf[1])] += count
        for name in {_short(*f) for f in frames}:
            inclusive[name] += count
    lines = [f"py-spy: {what}; 100 samples/s of non-idle threads, {total} samples", "", "self time by area:"]
    lines += [f"  {100 * n / total:5.1f}%  {area}" for area, n in areas.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    lines += ["", f"top {top} raftka functions by inclusive time:"]
    ours = [(name, n) for name, n in inclusive.most_common()
            if any(f"({d}/" in name for d in ("node", "raft", "storage")) and not name.startswith(("main ", "<module> "))]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in ours[:top]]
    return "\n".join(lines) + "\n"
