"""Where replicas and metadata voters go (pure): drains, replication-factor changes, rebalancing, voter seats.

Every plan works on an *assignment*, ``{(topic, partition): [broker, ...]}``
with the preferred leader first, and the brokers that may take replicas
(active ones: not draining, not decommissioned), with their racks when known.
The rules, in order of precedence when choosing a broker for a new replica:

1. never two replicas of a partition on one broker;
2. a rack that the partition's other replicas do not use yet (when racks are
   given; with fewer racks than replicas some must share);
3. the broker with the fewest replicas (counting the plan so far);
4. the lowest broker id (plans are deterministic).

Balance is counted in replicas per broker and preferred leaderships per
broker, as Kafka's tools do (not in bytes).  Partitions already moving are
left alone.  `choose_metadata_voters` picks the metadata group's voters:
current voters keep their seats while they are active, and free seats go to
live brokers on racks not yet seated, lowest id first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

Key = tuple[str, int]
Assignment = Mapping[Key, Sequence[int]]

AUTO_VOTERS_SMALL, AUTO_VOTERS_LARGE = 3, 5


class PlacementError(ValueError):
    """No placement satisfies the rules (too few brokers); the message says which partition."""


def replica_counts(assignment: Assignment, brokers: Iterable[int] = ()) -> Counter:
    counts = Counter({b: 0 for b in brokers})
    for replicas in assignment.values():
        counts.update(replicas)
    return counts


def leader_counts(assignment: Assignment, brokers: Iterable[int] = ()) -> Counter:
    counts = Counter({b: 0 for b in brokers})
    counts.update(replicas[0] for replicas in assignment.values() if replicas)
    return counts


def _racks_of(replicas: Iterable[int], racks: Mapping[int, str | None]) -> set[str]:
    return {racks[b] for b in replicas if racks.get(b)}


def pick(count: int, candidates: Sequence[int], loads: Counter, racks: Mapping[int, str | None],
         keep: Sequence[int], what: str) -> list[int]:
    """`count` brokers for new replicas of a partition that keeps replicas `keep` (`loads` is updated)."""
    chosen: list[int] = []
    used = _racks_of(keep, racks)
    for _ in range(count):
        options = [b for b in candidates if b not in keep and b not in chosen]
        if not options:
            raise PlacementError(f"{what}: not enough brokers to place {count} more replica(s) "
                                 f"(it keeps {list(keep)}; brokers that take replicas: {list(candidates)})")
        best = min(options, key=lambda b: (racks.get(b) in used if racks.get(b) else False, loads[b], b))
        chosen.append(best)
        loads[best] += 1
        if racks.get(best):
            used.add(racks[best])
    return chosen


def drain_plan(assignment: Assignment, broker: int, candidates: Sequence[int],
               racks: Mapping[int, str | None]) -> dict[Key, list[int]]:
    """New replica lists for every partition on `broker`: it is replaced by another broker (placed last, so that
    leadership stays with a replica that has the data)."""
    pool = [b for b in candidates if b != broker]
    loads = replica_counts(assignment, pool)
    plan = {}
    for key in sorted(assignment):
        replicas = list(assignment[key])
        if broker not in replicas:
            continue
        keep = [b for b in replicas if b != broker]
        plan[key] = keep + pick(1, pool, loads, racks, replicas, f"partition {key[0]}/{key[1]}")
    return plan


def replication_factor_plan(topic_assignment: Assignment, factor: int, candidates: Sequence[int],
                            racks: Mapping[int, str | None], all_assignments: Assignment) -> dict[Key, list[int]]:
    """New replica lists for a topic's partitions at replication factor `factor` (unchanged ones left out).

    Growing adds the least loaded brokers (rack-aware) after the existing replicas; shrinking keeps the
    preferred leader and drops the replicas on the most loaded brokers (those on brokers that take no replicas
    first)."""
    loads = replica_counts(all_assignments, candidates)
    plan = {}
    for key in sorted(topic_assignment):
        replicas = list(topic_assignment[key])
        if len(replicas) < factor:
            plan[key] = replicas + pick(factor - len(replicas), candidates, loads, racks, replicas,
                                        f"partition {key[0]}/{key[1]}")
        elif len(replicas) > factor:
            removable = sorted(replicas[1:], key=lambda b: (b in candidates, -loads[b], -b))
            dropped = set(removable[:len(replicas) - factor])
            for b in dropped:
                loads[b] -= 1
            plan[key] = [b for b in replicas if b not in dropped]
    return plan


def rebalance_plan(assignment: Assignment, candidates: Sequence[int], racks: Mapping[int, str | None],
                   moving: Iterable[Key] = ()) -> dict[Key, list[int]]:
    """Replica lists that spread replicas and preferred leaders evenly over `candidates` (changed ones only).

    First a partition with two replicas on one rack gets one moved to an unused rack (when one is free); then
    replicas move from the most to the least loaded broker until their counts differ by at most one (or no
    move fits the rules); then preferred leaders are reordered the same way. Replicas on brokers outside
    `candidates` (draining) are left to their drain."""
    frozen = set(moving)
    plan = {key: list(replicas) for key, replicas in assignment.items()}
    loads = replica_counts(plan, candidates)
    free = [k for k in sorted(plan) if k not in frozen]
    _repair_racks(plan, free, candidates, racks, loads)
    _spread_replicas(plan, free, candidates, racks, loads)
    _spread_leaders(plan, free, candidates)
    return {key: replicas for key, replicas in plan.items() if replicas != list(assignment[key])}


def _repair_racks(plan: dict[Key, list[int]], keys: list[Key], candidates: Sequence[int],
                  racks: Mapping[int, str | None], loads: Counter) -> None:
    all_racks = _racks_of(candidates, racks)
    for key in keys:
        replicas = plan[key]
        seen: set[str] = set()
        for i, b in enumerate(replicas):
            rack = racks.get(b)
            if rack is None or b not in candidates:
                continue
            if rack in seen:
                unused = all_racks - _racks_of(replicas, racks)
                options = [c for c in candidates if racks.get(c) in unused and c not in replicas]
                if options:
                    new = min(options, key=lambda c: (loads[c], c))
                    loads[b] -= 1
                    loads[new] += 1
                    replicas[i] = new
                    rack = racks.get(new)
            seen.add(rack)


def _fits_rack(replicas: list[int], leaving: int, new: int, racks: Mapping[int, str | None]) -> bool:
    """Would `new` taking `leaving`'s place keep the partition's rack spread?"""
    if not racks.get(new):
        return True
    others = _racks_of([b for b in replicas if b != leaving], racks)
    return racks[new] not in others or racks.get(leaving) == racks[new]


def _spread_replicas(plan: dict[Key, list[int]], keys: list[Key], candidates: Sequence[int],
                     racks: Mapping[int, str | None], loads: Counter) -> None:
    leaders = leader_counts({k: plan[k] for k in keys}, candidates)
    for _ in range(sum(loads.values()) + 1):
        moved = False
        for over in sorted(candidates, key=lambda b: (-loads[b], b)):
            for under in sorted(candidates, key=lambda b: (loads[b], b)):
                if loads[over] - loads[under] <= 1:
                    break
                fitting = [k for k in keys if over in plan[k] and under not in plan[k]
                           and _fits_rack(plan[k], over, under, racks)]
                # A follower replica moves first; a leading one (the only one of a factor-1 partition) takes its
                # leadership along, best to a broker that leads little.
                key = min(fitting, key=lambda k: (plan[k][0] == over, leaders[under] if plan[k][0] == over else 0),
                          default=None)
                if key is not None:
                    if plan[key][0] == over:
                        leaders[over] -= 1
                        leaders[under] += 1
                    plan[key][plan[key].index(over)] = under
                    loads[over] -= 1
                    loads[under] += 1
                    moved = True
                    break
            if moved:
                break
        if not moved:
            return


def _spread_leaders(plan: dict[Key, list[int]], keys: list[Key], candidates: Sequence[int]) -> None:
    leaders = leader_counts({k: plan[k] for k in keys}, candidates)
    for _ in range(len(keys) + 1):
        changed = False
        for key in keys:
            replicas = plan[key]
            leader = replicas[0]
            better = [b for b in replicas[1:] if b in candidates and leaders[b] + 1 < leaders[leader]]
            if better:
                new = min(better, key=lambda b: (leaders[b], b))
                replicas.remove(new)
                replicas.insert(0, new)
                leaders[leader] -= 1
                leaders[new] += 1
                changed = True
        if not changed:
            return


def metadata_voter_count(configured: int | None, candidates: int) -> int:
    """How many voters the metadata group should have: `--metadata-voters`, or auto (3, 5 from 5 brokers up)."""
    wanted = configured if configured is not None else \
        AUTO_VOTERS_LARGE if candidates >= AUTO_VOTERS_LARGE else AUTO_VOTERS_SMALL
    return max(1, min(wanted, candidates))


def choose_metadata_voters(current: Iterable[int], candidates: Sequence[int], count: int,
                           alive: Iterable[int] = (), racks: Mapping[int, str | None] | None = None) -> list[int]:
    """`count` voters among `candidates` (active brokers): current voters keep their seats (lowest ids first if
    there are too many), then live brokers on racks not yet seated, lowest id first."""
    racks = racks or {}
    alive = set(alive)
    seats = [b for b in sorted(set(current)) if b in candidates][:count]
    while len(seats) < count:
        options = [b for b in candidates if b not in seats]
        if not options:
            break
        used = _racks_of(seats, racks)
        seats.append(min(options, key=lambda b: (b not in alive, racks.get(b) in used if racks.get(b) else False,
                                                 b)))
    return sorted(seats)


__all__ = ["PlacementError", "choose_metadata_voters", "drain_plan", "leader_counts", "metadata_voter_count",
           "pick", "rebalance_plan", "replica_counts", "replication_factor_plan"]
