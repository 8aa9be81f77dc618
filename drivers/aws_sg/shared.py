"""VPC reads shared by the driver instances of one process: one paginated describe round serves every point of
the VPC that fetches at about the same time, without ever serving a state older than the reader may see."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from drivers.aws_sg.permissions import DRIVER
from drivers.aws_sg.ratelimit import AccountKey
from orchestrator.model import DriverError, PermanentDriverError, TransientDriverError

Part = tuple[str, ...]
"""A part of a VPC's state a mutating call changes: ``("group", <name>)`` or ``("enis",)``."""
T = TypeVar("T")
MAX_ROUNDS = 4
NEVER = float("-inf")
GATHER_SECONDS = 0.1
"""A load that waited for the running one waits this much longer, so that the readers just served by that one
(each about to ask for its next fetch) join it instead of forming the load after."""


@dataclass
class _Load(Generic[T]):
    """One describe round of a VPC: whom it serves, when it began (None while pending), the versions then."""

    leader: str
    interests: set[Hashable]
    narrow: bool = False
    started: float | None = None
    finished: float | None = None
    versions: dict[Part, int] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    view: T | None = None
    error: DriverError | None = None
    crash: str = ""


class SharedReads(Generic[T]):
    """Single-flight, group-committed reads of one VPC for every driver instance of the process.

    A load (a full describe round) serves a reader only when (1) it began at or after the reader's
    ``not_before`` — a point's first fetch passes ``NEVER``, every later fetch (stale check, checkpoint,
    verify) the time it was asked for, so it sees every change completed before it asked; (2) none of the
    parts the reader depends on changed through this process since the load began (every mutating call bumps
    its part before and after it is sent); (3) it covers the reader's ``interest``; and (4), for a finished
    load, it finished at most ``ttl`` seconds ago.  Otherwise the reader joins the pending load — which starts
    when the running one (if any) is done, so every reader arriving meanwhile shares it — or creates it.  A load
    created for a later fetch is ``narrow``: it need only cover the interests of the readers that join it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._versions: Counter[Part] = Counter()
        self._interests: Counter[Hashable] = Counter()
        self._latest: _Load[T] | None = None
        self._running: _Load[T] | None = None
        self._pending: _Load[T] | None = None

    def register(self, interest: Hashable) -> None:
        with self._lock:
            self._interests[interest] += 1

    def unregister(self, interest: Hashable) -> None:
        with self._lock:
            self._interests[interest] -= 1
            if self._interests[interest] <= 0:
                del self._interests[interest]
            if not self._interests:
                self._latest = None  # no instance left to serve: do not keep the VPC's state in memory

    def changed(self, part: Part) -> None:
        """A mutating call is about to change (or has changed) ``part``: loads begun before serve no one needing it."""
        with self._lock:
            self._versions[part] += 1

    def read(self, reader: str, interest: Hashable, deps: tuple[Part, ...], not_before: float, ttl: float,
             load: Callable[[frozenset[Hashable], bool], T], covers: Callable[[T], bool]) -> T:
        """A view fresh enough for ``reader`` (raises, as the reader's own error, what its load raised)."""
        for _ in range(MAX_ROUNDS):
            flight, leader, blocker = self._pick(reader, interest, deps, not_before, ttl, covers)
            if leader:
                self._lead(flight, blocker, load)
            else:
                flight.done.wait()
            if flight.error is not None:
                raise flight.error if leader else _for_reader(flight.error, reader, flight.leader)
            if flight.view is None:
                raise PermanentDriverError(f"the describe of the VPC shared with {flight.leader} failed: "
                                           f"{flight.crash}", point=reader, driver=DRIVER)
            if covers(flight.view):
                return flight.view
        raise TransientDriverError("the shared describe of the VPC kept missing this point's group; try again",
                                   point=reader, driver=DRIVER)

    def _serves(self, load: _Load[T], deps: Iterable[Part], not_before: float) -> bool:
        return (load.started is not None and load.started >= not_before
                and all(load.versions.get(d, 0) == self._versions[d] for d in deps))

    def _pick(self, reader: str, interest: Hashable, deps: tuple[Part, ...], not_before: float, ttl: float,
              covers: Callable[[T], bool]) -> tuple[_Load[T], bool, _Load[T] | None]:
        """(the load to use, whether this reader runs it, the running load it waits for first)."""
        with self._lock:
            latest, running = self._latest, self._running
            if latest is not None and latest.view is not None and self._serves(latest, deps, not_before):
                assert latest.finished is not None
                if self.clock() - latest.finished <= ttl and covers(latest.view):
                    return latest, False, None
            if running is not None and interest in running.interests and self._serves(running, deps, not_before):
                return running, False, None
            if self._pending is not None:
                self._pending.interests.add(interest)
                return self._pending, False, None
            narrow = not_before != NEVER
            self._pending = _Load(reader, {interest} if narrow else set(self._interests) | {interest}, narrow)
            return self._pending, True, running

    def _lead(self, flight: _Load[T], blocker: _Load[T] | None,
              load: Callable[[frozenset[Hashable], bool], T]) -> None:
        if blocker is not None:
            blocker.done.wait()  # one load at a time: the readers arriving meanwhile join this one
            time.sleep(GATHER_SECONDS)
        with self._lock:
            self._pending = None
            flight.started = self.clock()
            flight.versions = dict(self._versions)
            self._running = flight
        try:
            flight.view = load(frozenset(flight.interests), flight.narrow)
        except DriverError as exc:
            flight.error = exc
        except Exception as exc:
            flight.crash = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with self._lock:
                self._running = None
                flight.finished = self.clock()
                latest = self._latest
                if flight.view is not None and (latest is None or flight.started >= (latest.started or NEVER)):
                    self._latest = flight
            flight.done.set()


def _for_reader(error: DriverError, reader: str, leader: str) -> DriverError:
    """The error of a load another point ran, as the reader's own (same kind, same delay)."""
    prefix = f"{error.point} ({error.driver}): "
    text = error.message.removeprefix(prefix)
    message = f"{text} (in the describe of the VPC shared with {leader})"
    if isinstance(error, TransientDriverError):
        return TransientDriverError(message, point=reader, driver=DRIVER, delay=error.delay)
    return PermanentDriverError(message, point=reader, driver=DRIVER)


class ReadRegistry(Generic[T]):
    """The process's :class:`SharedReads`, one per (account key, VPC id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vpcs: dict[tuple[AccountKey, str], SharedReads[T]] = {}

    def of(self, key: AccountKey, vpc_id: str) -> SharedReads[T]:
        with self._lock:
            found = self._vpcs.get((key, vpc_id))
            if found is None:
                found = self._vpcs[(key, vpc_id)] = SharedReads()
            return found
