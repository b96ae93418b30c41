"""A stand-in broker that writes through raftka.storage, for the process nemesis tests.

``python jepsen_harness_writer.py DATA_DIR burst`` appends records 0..99, fsyncs them
(PartitionLog.flush), appends 100..149 without fsync, touches DATA_DIR/../ready and
sleeps. ``... steady`` appends one record every 20 ms, each fsynced, continuing after
whatever the log already holds. Record values are their offsets (decimal).
"""

import sys
import time
from pathlib import Path

from raftka.storage import PartitionLog, Record

FLUSHED, UNFLUSHED = 100, 50


def append(log: PartitionLog, count: int) -> None:
    for _ in range(count):
        log.append([Record(None, str(log.log_end_offset).encode())])


def main(data_dir: str, mode: str) -> None:
    log = PartitionLog.open(data_dir)
    if mode == "burst":
        append(log, FLUSHED)
        log.flush()
        append(log, UNFLUSHED)
        (Path(data_dir).parent / "ready").write_text(f"{log.log_end_offset}\n")
        while True:
            time.sleep(60)
    while True:
        append(log, 1)
        log.flush()
        time.sleep(0.02)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
