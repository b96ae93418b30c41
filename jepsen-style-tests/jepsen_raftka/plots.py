"""PNG plots of a history: latency over time per op type and throughput over
time, with nemesis fault windows shaded, heals as green lines and instant
faults (e.g. kill) as dotted lines. Uses matplotlib's Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.axes import Axes  # noqa: E402

from .history import History  # noqa: E402

NS = 1e9
MAX_POINTS_PER_SERIES = 20_000  # ok ops beyond this are thinned by a stride
MARKERS = {"ok": ("o", 0.5), "fail": ("x", 0.9), "info": ("^", 0.9)}
FAILED = "fail/info (all)"
COLORS = {"send": "tab:blue", "poll": "tab:orange", "final_poll": "tab:green",
          "commit": "tab:purple", "list_committed": "tab:brown", "assign": "tab:pink",
          "subscribe": "tab:olive", "crash": "tab:red", FAILED: "dimgray"}
FAULT_COLORS = ["#f4a582", "#92c5de", "#d9b3ff", "#fddc84", "#b8e186", "#c2a5cf"]


def _shade_faults(ax: Axes, history: History) -> None:
    t0 = history.start_time
    end = max((e.time for e in history.events), default=t0)
    colors: dict[str, str] = {}
    for w in history.fault_windows():
        if w.name not in colors:
            colors[w.name] = FAULT_COLORS[len(colors) % len(FAULT_COLORS)]
            label = w.name
        else:
            label = None
        ax.axvspan((w.start - t0) / NS, ((w.end if w.end is not None else end) - t0) / NS,
                   color=colors[w.name], alpha=0.35, label=label, zorder=0)
    for i, heal in enumerate(history.heal_times):
        ax.axvline((heal - t0) / NS, color="black", ls="-.", lw=1.4,
                   label="heal" if i == 0 else None)
    seen: set[str] = set()
    for e in history.instant_faults():
        ax.axvline((e.time - t0) / NS, color="black", ls=":", lw=1,
                   label=e.f if e.f not in seen else None)
        seen.add(e.f)


def plot_latency(history: History, path: str | Path) -> Path:
    """Latency (ms, log scale) of every completed op against its invoke time."""
    t0 = history.start_time
    series: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for op in history.ops:
        if op.complete_time is not None:
            xs, ys = series.setdefault((op.f, op.type), ([], []))
            xs.append((op.invoke_time - t0) / NS)
            ys.append(max((op.complete_time - op.invoke_time) / 1e6, 1e-3))
    fig, ax = plt.subplots(figsize=(12, 6))
    _shade_faults(ax, history)
    for (f, kind), (xs, ys) in sorted(series.items()):
        stride = max(1, len(xs) // MAX_POINTS_PER_SERIES) if kind == "ok" else 1
        marker, alpha = MARKERS[kind]
        ax.scatter(xs[::stride], ys[::stride], s=6, marker=marker, alpha=alpha,
                   color=COLORS[f], label=f"{f} {kind}")
    ax.set_yscale("log")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency by operation")
    ax.legend(loc="upper left", fontsize="small", ncol=3, markerscale=2)
    return _save(fig, path)


def plot_throughput(history: History, path: str | Path, buckets: int = 200) -> Path:
    """Completions per second over time: ok per op type, and all fail/info together."""
    t0 = history.start_time
    end = max((e.time for e in history.events), default=t0)
    width = max((end - t0) / buckets, NS / 10)
    n = int((end - t0) // width) + 1
    counts: dict[str, list[int]] = {}
    for op in history.ops:
        if op.complete_time is not None:
            name = op.f if op.type == "ok" else FAILED
            counts.setdefault(name, [0] * n)[int((op.complete_time - t0) // width)] += 1
    fig, ax = plt.subplots(figsize=(12, 5))
    _shade_faults(ax, history)
    xs = [(i + 0.5) * width / NS for i in range(n)]
    for name, row in sorted(counts.items()):
        ax.plot(xs, [c * NS / width for c in row], lw=1.2, label=name, color=COLORS[name],
                ls="--" if name == FAILED else "-")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("completions / s")
    ax.set_title("throughput")
    ax.legend(loc="upper left", fontsize="small", ncol=3)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_plots(history: History, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [plot_latency(history, out / "latency.png"),
            plot_throughput(history, out / "throughput.png")]
