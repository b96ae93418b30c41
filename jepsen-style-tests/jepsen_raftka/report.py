"""The checker's result: verdict, anomaly counts, anomalies with their ops, and
its renderings as JSON (report.json) and readable text (report.txt)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .anomaly import KINDS, Anomaly

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"


@dataclass(slots=True)
class Report:
    verdict: str
    anomalies: list[Anomaly]
    unknown: list[str] = field(default_factory=list)  # why a check could not decide
    checks: dict[str, str] = field(default_factory=dict)  # check -> "checked" | "skipped: ..."
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(a.kind for a in self.anomalies)
        return {kind: counts[kind] for kind in KINDS if counts[kind]}

    def of_kind(self, kind: str) -> list[Anomaly]:
        return [a for a in self.anomalies if a.kind == kind]

    def to_json(self, max_per_kind: int = 1000) -> dict[str, Any]:
        """At most ``max_per_kind`` anomalies of each kind; counts are always exact."""
        listed: dict[str, list[dict[str, Any]]] = {}
        for a in self.anomalies:
            bucket = listed.setdefault(a.kind, [])
            if len(bucket) < max_per_kind:
                bucket.append(a.to_json())
        return {"verdict": self.verdict, "counts": self.counts, "unknown": self.unknown,
                "checks": self.checks, "stats": self.stats, "anomalies": listed}

    def to_text(self, examples_per_kind: int = 10) -> str:
        lines = [f"verdict: {self.verdict.upper()}", ""]
        lines.append("anomalies:" if self.anomalies else "anomalies: none")
        lines += [f"  {kind:32} {n}" for kind, n in self.counts.items()]
        if self.unknown:
            lines += ["", "undecided:"] + [f"  - {why}" for why in self.unknown]
        lines += ["", "checks:"] + [f"  {name:32} {state}" for name, state in self.checks.items()]
        lines += ["", "stats:"] + [f"  {k:32} {v}" for k, v in self.stats.items()]
        for kind, n in self.counts.items():
            examples = self.of_kind(kind)[:examples_per_kind]
            lines += ["", f"== {kind} ({n}; showing {len(examples)}) =="]
            lines += [f"  - {a.describe()}" for a in examples]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, text_path = out / "report.json", out / "report.txt"
        json_path.write_bytes(orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2
                                           | orjson.OPT_NON_STR_KEYS))
        text_path.write_text(self.to_text())
        return json_path, text_path
