"""Storage benchmark: PartitionLog append throughput with one fsync per batch, next to raw disk speed.

For 100 B and 1 KiB records in batches of 1, 100 and 1000 it measures:
  raw        os.write(chunk) + fsync, chunk = the encoded batch size (the ceiling for the log)
  append     PartitionLog.append(records) + flush()      (encoding included)
  raw-batch  PartitionLog.append_raw(pre-encoded batch) + flush(), every record verified
  raw-trust  the same with verify_records=False (header + CRC checks only, e.g. Raft followers)
The modes of one row run in alternating short slices, so disk-speed drift hits them alike.
Run `python -m bench.storage [--seconds S] [--dir DIR]` from the repository root; the rows also go
to bench/results/storage.json (with the load average before and after).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

from raftka.storage import LogConfig, PartitionLog, Record, encode_batch

RECORD_SIZES = (100, 1024)
BATCH_SIZES = (1, 100, 1000)
ROUNDS = 5
CONFIG = LogConfig(max_message_bytes=4 << 20)
RESULTS = Path(__file__).resolve().parent / "results" / "storage.json"


class RawFile:
    """os.write + os.fsync of a fixed chunk: what the disk can do."""

    def __init__(self, directory: str, chunk: bytes) -> None:
        self.path = os.path.join(directory, "raw.bin")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.chunk = chunk

    def step(self) -> None:
        os.write(self.fd, self.chunk)
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
        os.unlink(self.path)


class LogAppender:
    """One batch appended to a PartitionLog (encoded, or pre-encoded), then flush()."""

    def __init__(self, directory: str, mode: str, records: list[Record], batch: bytes) -> None:
        self.path = os.path.join(directory, mode)
        self.log = PartitionLog.open(self.path, CONFIG)
        self.mode, self.records, self.batch = mode, records, batch

    def step(self) -> None:
        if self.mode == "append":
            self.log.append(self.records)
        else:
            self.log.append_raw(self.batch, verify_records=self.mode == "raw-batch")
        self.log.flush()

    def close(self) -> None:
        self.log.close()
        shutil.rmtree(self.path)


def measure(subjects: dict[str, RawFile | LogAppender], seconds: float) -> dict[str, tuple[int, float]]:
    """Run every subject for seconds in total, in ROUNDS alternating slices; (steps, elapsed) each."""
    totals = {name: [0, 0.0] for name in subjects}
    for _ in range(ROUNDS):
        for name, subject in subjects.items():
            count, start = 0, time.perf_counter()
            deadline = start + seconds / ROUNDS
            while True:
                subject.step()
                count += 1
                if count % 4 == 0 and time.perf_counter() >= deadline:
                    break
            totals[name][0] += count
            totals[name][1] += time.perf_counter() - start
    return {name: (count, elapsed) for name, (count, elapsed) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per mode and row (default 1.0)")
    parser.add_argument("--dir", default=None, help="directory on the disk to measure (default: system temp dir)")
    args = parser.parse_args()
    if args.dir is not None and not os.path.isdir(args.dir):
        parser.error(f"--dir {args.dir}: no such directory")
    directory = tempfile.mkdtemp(prefix="raftka-bench-", dir=args.dir)
    rows: list[dict] = []
    load_before = os.getloadavg()
    print(f"raftka storage benchmark in {directory}: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.seconds:g} s per cell")
    print("one fsync per batch; MB/s counts encoded batch bytes; % raw = share of the raw write+fsync speed for the same chunk size\n")
    header = f"{'record':>6} {'batch':>5} {'bytes':>8} | {'mode':<9} {'MB/s':>7} {'batches/s':>9} {'records/s':>9} {'% raw':>6}"
    print(header)
    print("-" * len(header))
    try:
        for record_size in RECORD_SIZES:
            for batch_size in BATCH_SIZES:
                records = [Record(b"key-%06d" % i, os.urandom(record_size), (), 1_700_000_000_000) for i in range(batch_size)]
                batch = encode_batch(records)
                subjects: dict[str, RawFile | LogAppender] = {"raw": RawFile(directory, batch)}
                for mode in ("append", "raw-batch", "raw-trust"):
                    subjects[mode] = LogAppender(directory, mode, records, batch)
                try:
                    results = measure(subjects, args.seconds)
                finally:
                    for subject in subjects.values():
                        subject.close()
                raw_mbs = results["raw"][0] * len(batch) / results["raw"][1] / 1e6
                for i, (mode, (count, elapsed)) in enumerate(results.items()):
                    mbs = count * len(batch) / elapsed / 1e6
                    rows.append({"record_bytes": record_size, "batch_records": batch_size, "batch_bytes": len(batch),
                                 "mode": mode, "mb_per_s": round(mbs, 1), "records_per_s": round(count * batch_size / elapsed),
                                 "percent_of_raw": round(100 * mbs / raw_mbs, 1)})
                    lead = f"{record_size:>6} {batch_size:>5} {len(batch):>8}" if i == 0 else " " * 21
                    print(
                        f"{lead} | {mode:<9} {mbs:>7.1f} {count / elapsed:>9.0f} {count * batch_size / elapsed:>9.0f} {100 * mbs / raw_mbs:>5.0f}%",
                        flush=True,
                    )
    finally:
        shutil.rmtree(directory)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps({"seconds_per_cell": args.seconds, "load_average_before": load_before,
                                      "load_average_after": os.getloadavg(), "rows": rows},
                                     option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
