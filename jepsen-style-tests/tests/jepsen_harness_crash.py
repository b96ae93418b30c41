"""A harness to be crashed: ``python jepsen_harness_crash.py MODE RUN_DIR`` opens a 3-host
cluster, starts stand-in servers, partitions node 1 away, prints one JSON line
{"mode", "slot", "token", "pids"} and waits for a signal."""

import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jepsen_harness_support import health_server_command  # noqa: E402

from jepsen_raftka.cluster import open_cluster  # noqa: E402
from jepsen_raftka.processes import Brokers  # noqa: E402
from jepsen_raftka.topology import isolate  # noqa: E402


def main(mode: str, run_dir: str) -> None:
    with open_cluster(3, mode=mode) as cluster, Brokers(cluster, run_dir, command=health_server_command) as brokers:
        brokers.start()
        brokers.wait_healthy(timeout_s=15)
        cluster.set_grudge("crash-test", isolate(cluster.nodes, [1]))
        pids = [brokers.processes[n].pid for n in cluster.nodes]
        print(orjson.dumps({"mode": cluster.mode, "slot": cluster.slot, "token": cluster.run_token,
                            "pids": pids}).decode(), flush=True)
        while True:
            time.sleep(0.1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
