"""Benchmark of the Raft PeerTransport: two transports in two processes on loopback.

    python -m bench.transport [--seconds 2] [--loop both|uvloop|asyncio]

For 64 B, 1 KiB, 100 KiB and 1 MiB payloads the sender keeps the queue full for --seconds and
prints frames/s, MB/s and CPU per frame of both processes; then the 64 B round-trip time, and
what sealing + opening a frame costs (the encryption share of the work). Finishes in well
under a minute with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import subprocess
import sys
import time

import uvloop

from raftka.raft.transport import PeerTransport
from raftka.raft.wire_frames import FrameOpener, FrameSealer

SECRET = b"bench secret"
HOST = "127.0.0.1"
SIZES = [("64 B", 64), ("1 KiB", 1 << 10), ("100 KiB", 100 << 10), ("1 MiB", 1 << 20)]
SENDER, RECEIVER = 1, 2
DATA, END, ACK, PING, PONG, QUIT = b"D", b"E", b"A", b"P", b"O", b"Q"
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# -- receiver process ----------------------------------------------------------------------------------


async def receive(sender_port: int) -> None:
    done = asyncio.Event()
    counted = {"frames": 0, "bytes": 0}
    node: PeerTransport

    def on_message(sender: int, payload: bytes) -> None:
        kind = payload[:1]
        if kind == DATA:
            counted["frames"] += 1
            counted["bytes"] += len(payload)
        elif kind == PING:
            node.send(sender, PONG)
        elif kind == END:
            report = f"{counted['frames']} {counted['bytes']} {cpu_seconds():.6f}".encode()
            node.send(sender, ACK + report)
            counted["frames"] = counted["bytes"] = 0
        elif kind == QUIT:
            done.set()

    node = PeerTransport(RECEIVER, (HOST, 0), {SENDER: (HOST, sender_port)}, SECRET, on_message)
    await node.start()
    print(node.port, flush=True)
    try:
        async with asyncio.timeout(120):
            await done.wait()
    finally:
        await node.close()


def receiver_main(loop_name: str, sender_port: int) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(receive(sender_port))


# -- sender (this process) -----------------------------------------------------------------------------


class Sender:
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        # the receiver's port is known only once it runs; until then dial a port nobody listens on
        self.node = PeerTransport(SENDER, (HOST, 0), {RECEIVER: (HOST, unused_port())}, SECRET,
                                  lambda _sender, payload: self.replies.put_nowait(payload))

    async def throughput(self, size: int, seconds: float) -> tuple[float, float, float, float]:
        """(frames/s, MB/s, sender CPU us/frame, receiver CPU us/frame) over about `seconds`."""
        payload = DATA + os.urandom(size - 1)
        _frames, _bytes, receiver_cpu_began = await self._phase_end()  # also drains the previous phase
        began, cpu_began = time.perf_counter(), cpu_seconds()
        sent = 0
        deadline = began + seconds
        while time.perf_counter() < deadline:
            for _ in range(256):
                if not self.node.send(RECEIVER, payload):
                    await asyncio.sleep(0.001)  # queue full: let it drain rather than spin
                    break
                sent += 1
            else:
                await asyncio.sleep(0)
        frames, received_bytes, receiver_cpu_end = await self._phase_end()
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds() - cpu_began
        assert frames == sent and received_bytes == sent * size, (frames, sent)
        return (
            frames / elapsed,
            received_bytes / elapsed / 1e6,
            cpu / frames * 1e6,
            (receiver_cpu_end - receiver_cpu_began) / frames * 1e6,
        )

    async def _phase_end(self) -> tuple[int, int, float]:
        """Mark the end of a phase; the receiver answers with its frame and byte counts and CPU seconds."""
        while not self.node.send(RECEIVER, END):
            await asyncio.sleep(0.001)
        reply = await asyncio.wait_for(self.replies.get(), 30)
        assert reply[:1] == ACK, reply[:20]
        frames, received_bytes, receiver_cpu = reply[1:].split()
        return int(frames), int(received_bytes), float(receiver_cpu)

    async def round_trips(self, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            began = time.perf_counter()
            assert self.node.send(RECEIVER, PING)
            assert await asyncio.wait_for(self.replies.get(), 5) == PONG
            samples.append(time.perf_counter() - began)
        return samples


def crypto_cost_us(size: int) -> float:
    """Microseconds to seal and open one frame of `size` bytes, in this process."""
    key = os.urandom(32)
    sealer, opener = FrameSealer(key), FrameOpener(key)
    payload = os.urandom(size)
    rounds = max(50, min(20_000, (200 << 20) // max(size, 1) // 10))
    began = time.perf_counter()
    for _ in range(rounds):
        opener.open(sealer.seal(payload)[1])
    return (time.perf_counter() - began) / rounds * 1e6


async def run_sender(loop_name: str, seconds: float) -> None:
    sender = Sender()
    await sender.node.start()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.transport", "--loop", loop_name, "--receiver-of", str(sender.node.port)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        receiver_port = int(await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline))
        sender.node.set_peers({RECEIVER: (HOST, receiver_port)})
        async with asyncio.timeout(10):
            while not (sender.node.is_connected(RECEIVER)
                       and sender.node.stats()["peers"][RECEIVER]["inbound_connected"]):
                await asyncio.sleep(0.01)
        print(f"\n== loop: {loop_name} (sender and receiver), {seconds:.1f} s per size ==")
        print(f"{'payload':>8} {'frames/s':>11} {'MB/s':>8} {'sender CPU':>12} {'receiver CPU':>13} "
              f"{'seal+open':>10} {'crypto share':>12}")
        for label, size in SIZES:
            await sender.throughput(size, 0.2)  # warm up
            frames_per_s, mb_per_s, sender_us, receiver_us = await sender.throughput(size, seconds)
            crypto_us = crypto_cost_us(size)
            share = crypto_us / (sender_us + receiver_us) * 100
            print(f"{label:>8} {frames_per_s:>11,.0f} {mb_per_s:>8,.1f} {sender_us:>9.1f} us {receiver_us:>10.1f} us "
                  f"{crypto_us:>7.1f} us {share:>11.0f}%")
        samples = sorted(await sender.round_trips(2000))
        print(f"64 B round trip (send -> on_message -> send back): median {statistics.median(samples) * 1e6:.0f} us, "
              f"p99 {samples[int(len(samples) * 0.99)] * 1e6:.0f} us")
        sender.node.send(RECEIVER, QUIT)
        await asyncio.sleep(0.05)
    finally:
        await sender.node.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per payload size")
    parser.add_argument("--loop", choices=["both", *LOOPS], default="both")
    parser.add_argument("--receiver-of", type=int, help=argparse.SUPPRESS)  # internal: run the receiving process
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the end of each run closes connections on purpose
    if args.receiver_of is not None:
        receiver_main(args.loop, args.receiver_of)
        return
    print(f"raftka Raft transport benchmark: AES-256-GCM frames over loopback TCP, 2 processes, {os.cpu_count()} CPUs")
    for loop_name in (list(LOOPS) if args.loop == "both" else [args.loop]):
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            runner.run(run_sender(loop_name, args.seconds))


if __name__ == "__main__":
    main()
