"""Run jepsen-style scenarios against real raftka brokers: ``python jepsen-style-tests/run.py
--nodes 3 --nemesis partition --time-limit 60 --out results/`` (also ``--bug NAME``, ``--full``,
``--quick``; see jepsen_raftka.run_cli)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jepsen_raftka.run_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
