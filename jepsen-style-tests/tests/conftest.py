"""Puts jepsen-style-tests/ on sys.path so tests can import jepsen_raftka."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
