"""Check a jepsen-style history: ``python jepsen-style-tests/check.py HISTORY.jsonl
[--replicas replicas.json] [--leaders leaders.json] --out DIR`` (see jepsen_raftka.cli)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jepsen_raftka.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
