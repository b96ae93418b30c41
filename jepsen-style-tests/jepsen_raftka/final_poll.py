"""The final phase: after the heal, read every partition from offset 0 to its end.

Each partition gets its own history process doing ``final_poll`` ops: fetches
from a random broker, starting at offset 0 and continuing where the last one
ended, until a fetch reaches the high watermark the serving broker reports
(``X-Raftka-High-Watermark``), or the deadline passes. Failed fetches are
recorded and tried again (a fetch without an answer retires its process id;
the partition continues under a new one). These are the reads the checker
uses to decide that acknowledged writes were lost, and whether the final
polls converged in time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from .api import KAFKA_JSON, BrokerApi, NoAnswer, NotDelivered
from .client import scalar_value
from .history import HistoryRecorder, partition_key

FIRST_PROCESS = 1_000_000  # far above any workload process id
RETRY_PAUSE_S = 0.1
HIGH_WATERMARK = "x-raftka-high-watermark"


def final_polls(api: BrokerApi, recorder: HistoryRecorder, topic: str, partitions: Sequence[int], *,
                deadline: float, max_bytes: int = 1 << 20, request_timeout_s: float = 5.0) -> dict[str, dict]:
    """Read each partition to its end; returns per partition {"offset": next offset, "done": bool}."""
    ids = itertools.count(FIRST_PROCESS)
    outcome = {}
    for partition in partitions:
        tp = partition_key(topic, partition)
        process, position, done = next(ids), 0, False
        while not done and time.monotonic() < deadline:
            invoke = {"partition": tp, "offset": position}
            recorder.invoke(process, "final_poll", invoke)
            path = (f"/topics/{topic}/partitions/{partition}/records"
                    f"?offset={position}&max_bytes={max_bytes}&timeout_ms=0")
            try:
                reply = api.request(api.random_node(), "GET", path, accept=KAFKA_JSON, timeout_s=request_timeout_s)
            except NotDelivered as exc:
                recorder.complete("fail", process, "final_poll", invoke, error=str(exc))
                time.sleep(RETRY_PAUSE_S)
                continue
            except NoAnswer as exc:
                recorder.complete("info", process, "final_poll", invoke, error=str(exc))
                process = next(ids)
                continue
            hw = reply.headers.get(HIGH_WATERMARK, "")
            if (reply.status != 200 or not isinstance(reply.doc, list) or not hw.isdigit()
                    or not all(isinstance(r, dict) and type(r.get("offset")) is int for r in reply.doc)):
                error = reply.describe() if reply.status != 200 else f"malformed answer {reply.doc!r}"[:200]
                recorder.complete("fail", process, "final_poll", invoke, node=reply.served_by, error=error)
                time.sleep(RETRY_PAUSE_S)
                continue
            pairs = [[r["offset"], scalar_value(r.get("value"))] for r in reply.doc]
            recorder.complete("ok", process, "final_poll", {"records": {tp: pairs}, "mode": "assign"},
                              node=reply.served_by)
            if pairs:
                position = pairs[-1][0] + 1
            done = position >= int(hw)
        outcome[tp] = {"offset": position, "done": done}
    return outcome
