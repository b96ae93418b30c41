"""A cluster of hosts made of Linux network namespaces, with faults by iptables and tc.

Host ``i`` of run slot ``s`` (see runslot.py) is the namespace ``rk-s-i``
with loopback up and ``eth0`` = 10.77.s.(10+i)/24, one end of a veth pair
whose other end is a port of a bridge in a "switch" namespace ``rk-s-sw``.
The root namespace joins that bridge through the veth ``rk<s>c`` holding
10.77.s.1, the address of CLIENT: the harness and its workload clients talk
to every host from the root namespace. The bridge lives in its own namespace
so that the root namespace's firewall (e.g. Docker's FORWARD DROP policy,
applied to bridged frames when br_netfilter is loaded) never sees host-to-host
traffic, and nothing is ever added to the root namespace's firewall. Nothing
routes anywhere but that /24.

Faults: the combined grudge (topology.py) becomes one iptables ruleset per
namespace (``INPUT -s <src> -j DROP``; packets a node would send to a CLIENT
that drops them are cut by ``OUTPUT -d``), loaded atomically by
iptables-restore; packet loss is ``-m statistic --mode random``; bandwidth is
a ``tc tbf`` qdisc on the host's eth0 (egress).

Cleanup: close() (also via the context manager and teardown.py on exit and
SIGTERM) deletes the namespaces, which takes their veths, bridge and rules
along. ``cleanup_stale()`` removes what crashed runs (SIGKILL) left: every
``rk-<s>-*`` namespace and ``rk<s>c`` link whose slot no live run holds,
killing the processes still inside first.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

from . import runslot, teardown
from .topology import CLIENT, Endpoint, Grudge, GrudgeLayers, drops

SUBNET = "10.77"
_NS_RE = re.compile(r"^rk-(\d+)-(\d+|sw)$")
_PROBE_NS_RE = re.compile(r"^rk-probe-(\d+)$")
_LINK_RE = re.compile(r"^rk(\d+)c$")
_COMMAND_TIMEOUT_S = 20
_DELETE_ATTEMPTS = 3


class NetnsError(RuntimeError):
    """An ip/iptables/tc command failed; the message has the command and its stderr."""


def _ip_batch(ns: str | None, commands: Sequence[str]) -> None:
    """Run ip commands in one process, in namespace ns (None: the root namespace)."""
    _run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], stdin="\n".join(commands) + "\n")


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S)
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def ns_name(slot: int, node: int) -> str:
    return f"rk-{slot}-{node}"


def switch_name(slot: int) -> str:
    return f"rk-{slot}-sw"


def client_link_name(slot: int) -> str:
    return f"rk{slot}c"


def host_ip(slot: int, node: int) -> str:
    return f"{SUBNET}.{slot}.{10 + node}"


def client_ip(slot: int) -> str:
    return f"{SUBNET}.{slot}.1"


@functools.lru_cache(maxsize=1)
def availability() -> tuple[bool, str]:
    """(usable, reason): root, iproute2 and iptables present, and a namespace with a
    firewall can actually be made here (checked once per process)."""
    if os.geteuid() != 0:
        return False, f"not root (uid {os.geteuid()}): network namespaces need root"
    missing = [tool for tool in ("ip", "iptables-restore", "tc") if shutil.which(tool) is None]
    if missing:
        return False, f"missing {', '.join(missing)} (install iproute2 iptables: make deb-packages)"
    probe = f"rk-probe-{os.getpid()}"
    try:
        _run(["ip", "netns", "add", probe])
        try:
            _run(["ip", "netns", "exec", probe, "iptables-restore"], stdin=_ruleset([]))
        finally:
            _run(["ip", "netns", "delete", probe], check=False)
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot create a network namespace with iptables: {exc}"
    return True, "root, ip netns and iptables work"


def _ruleset(rules: Sequence[str]) -> str:
    chains = [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    return "\n".join(["*filter", *chains, *rules, "COMMIT", ""])


class NetnsCluster:
    """N hosts as network namespaces; every service of a host listens on the same port."""

    mode = "netns"
    network_faults = frozenset({"partition", "packet-loss", "bandwidth"})

    def __init__(self, node_count: int, ports: Mapping[str, int]) -> None:
        if not 1 <= node_count <= 200:
            raise ValueError(f"node_count must be 1..200, got {node_count}")
        self.nodes: tuple[int, ...] = tuple(range(1, node_count + 1))
        self.ports = dict(ports)
        self.services = frozenset(self.ports)
        self._slot = runslot.acquire()
        self.slot = self._slot.number
        self.run_token = self._slot.token
        self._grudges = GrudgeLayers()
        self._loss: dict[int, float] = {}
        self._applied_rules: dict[int, str] = {}
        self._bandwidth: dict[int, str] = {}
        self._teardown_key = teardown.register(self.close)
        try:
            _remove_slot(self.slot)  # leftovers of a crashed earlier owner of this slot
            self._create()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- addressing

    @property
    def client_host(self) -> str:
        return client_ip(self.slot)

    def bind_address(self, node: int, service: str) -> tuple[str, int]:
        """Where node's server for service listens."""
        return host_ip(self.slot, self._node(node)), self.ports[service]

    def address(self, src: Endpoint, dst: int, service: str) -> tuple[str, int]:
        """How src (a node or CLIENT) reaches dst's service."""
        return self.bind_address(dst, service)

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        """argv run as a process of host node (ip netns exec execs it: same pid)."""
        return ["ip", "netns", "exec", ns_name(self.slot, self._node(node)), *argv]

    def _node(self, node: int) -> int:
        if node not in self.nodes:
            raise ValueError(f"no node {node!r} in this cluster (nodes {list(self.nodes)})")
        return node

    # ----------------------------------------------------------------- lifecycle

    def _create(self) -> None:
        s, switch = self.slot, switch_name(self.slot)
        if _run(["ip", "-4", "route", "show", f"{SUBNET}.{s}.0/24"]).stdout.strip():
            raise NetnsError(f"{SUBNET}.{s}.0/24 is already routed here; refusing to shadow it")
        for ns in (switch, *(ns_name(s, node) for node in self.nodes)):
            _run(["ip", "netns", "add", ns])
        ports = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
        for node in self.nodes:
            ports += [f"link add v{node} type veth peer name eth0 netns {ns_name(s, node)}",
                      f"link set v{node} master br0 up"]
        _ip_batch(switch, ports)
        link = client_link_name(s)
        _ip_batch(None, [f"link add {link} type veth peer name client netns {switch}",
                         f"addr add {client_ip(s)}/24 dev {link}", f"link set {link} up"])
        _ip_batch(switch, ["link set client master br0 up"])
        for node in self.nodes:
            _ip_batch(ns_name(s, node), ["link set lo up", f"addr add {host_ip(s, node)}/24 dev eth0",
                                         "link set eth0 up"])

    def close(self) -> None:
        """Delete everything this cluster made (idempotent)."""
        if not self._slot.held:
            return
        try:
            _remove_slot(self.slot)
        finally:
            self._slot.release()
            teardown.unregister(self._teardown_key)

    def __enter__(self) -> NetnsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- faults

    def set_grudge(self, layer: str, grudge: Grudge) -> None:
        """Replace one named grudge layer; the network enforces the union of all layers."""
        self._grudges.set(layer, grudge)
        self._apply_rules()

    def clear_grudge(self, layer: str) -> None:
        self._grudges.clear(layer)
        self._apply_rules()

    def set_packet_loss(self, probabilities: Mapping[int, float]) -> None:
        """Drop each packet arriving at these nodes with the given probability ({} heals)."""
        for node, p in probabilities.items():
            self._node(node)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"loss probability must be in [0, 1], got {p}")
        self._loss = dict(probabilities)
        self._apply_rules()

    def set_bandwidth(self, rates: Mapping[int, str]) -> None:
        """Limit what these nodes send to a tc rate such as "1mbit" ({} heals)."""
        for node in set(self._bandwidth) | set(rates):
            ns = ns_name(self.slot, self._node(node))
            if node in rates:
                _run(["tc", "-n", ns, "qdisc", "replace", "dev", "eth0", "root", "tbf",
                      "rate", rates[node], "burst", "32kbit", "latency", "400ms"])
            else:
                _run(["tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root"], check=False)
        self._bandwidth = dict(rates)

    def heal_network(self) -> None:
        self._grudges.clear()
        self._loss = {}
        self._apply_rules()
        self.set_bandwidth({})

    def rules(self, node: int) -> list[str]:
        """The iptables rules node's namespace should have now."""
        grudge, s = self._grudges.combined, self.slot
        rules = [f"-A INPUT -s {host_ip(s, src)}/32 -j DROP" for src in self.nodes if drops(grudge, src, node)]
        if drops(grudge, CLIENT, node):
            rules.append(f"-A INPUT -s {client_ip(s)}/32 -j DROP")
        if drops(grudge, node, CLIENT):
            rules.append(f"-A OUTPUT -d {client_ip(s)}/32 -j DROP")
        if self._loss.get(node):
            rules.append(f"-A INPUT -i eth0 -m statistic --mode random --probability {self._loss[node]:.4f} -j DROP")
        return rules

    def _apply_rules(self) -> None:
        for node in self.nodes:
            text = _ruleset(self.rules(node))
            if self._applied_rules.get(node, _ruleset([])) != text:
                _run(["ip", "netns", "exec", ns_name(self.slot, node), "iptables-restore"], stdin=text)
                self._applied_rules[node] = text


# --------------------------------------------------------------------- leftovers


def _namespaces() -> list[str]:
    if shutil.which("ip") is None:
        return []
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _links() -> list[str]:
    if shutil.which("ip") is None:
        return []
    out = _run(["ip", "-o", "link", "show"], check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.count(":") >= 2]


def _kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process in ns and wait (briefly) until none is left."""
    deadline = time.monotonic() + 5
    while True:
        pids = [int(p) for p in _run(["ip", "netns", "pids", ns], check=False).stdout.split()]
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _delete_namespace(ns: str) -> str | None:
    """Kill ns's processes and delete it, trying `_DELETE_ATTEMPTS` times (its file can be busy for a moment);
    None once it is gone, else why it is not."""
    error = None
    for attempt in range(_DELETE_ATTEMPTS):
        time.sleep(0.1 * attempt)
        try:
            _kill_namespace_processes(ns)
            _run(["ip", "netns", "delete", ns])
            return None
        except (NetnsError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        if ns not in _namespaces():
            return None
    return error


def _remove_slot(slot: int) -> list[str]:
    """Delete the namespaces (and their processes) and links of a slot; returns their names.  One that cannot
    be deleted does not keep the others: every failure is raised together once the rest are gone."""
    def of_slot(regex: re.Pattern, names: list[str]) -> list[str]:
        return [n for n in names if (m := regex.match(n)) and int(m.group(1)) == slot]

    namespaces, links = of_slot(_NS_RE, _namespaces()), of_slot(_LINK_RE, _links())
    failures = [error for ns in namespaces if (error := _delete_namespace(ns)) is not None]
    for link in of_slot(_LINK_RE, _links()):  # normally gone with the switch namespace
        _run(["ip", "link", "delete", link], check=False)
    if failures:
        raise NetnsError(f"run slot {slot}: {len(failures)} namespace(s) not deleted: " + "; ".join(failures))
    return namespaces + links


def leftovers() -> list[str]:
    """Names of every harness namespace and link on this machine, live runs' included."""
    return sorted([ns for ns in _namespaces() if _NS_RE.match(ns) or _PROBE_NS_RE.match(ns)]
                  + [link for link in _links() if _LINK_RE.match(link)])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Remove namespaces and links of harness runs that are no longer alive; returns the names."""
    candidates = set()
    for name in leftovers():
        match = _NS_RE.match(name) or _LINK_RE.match(name)
        if match:
            candidates.add(int(match.group(1)))
    removed, failures = [], []
    with runslot.stale_slots(candidates) as stale:
        for slot in sorted(stale):
            try:
                removed += _remove_slot(slot)
            except NetnsError as exc:  # the other slots are still removed
                failures.append(str(exc))
    for ns in _namespaces():
        match = _PROBE_NS_RE.match(ns)
        if match and not _pid_alive(int(match.group(1))):
            _run(["ip", "netns", "delete", ns], check=False)
            removed.append(ns)
    if failures:
        raise NetnsError("; ".join(failures))
    return removed
