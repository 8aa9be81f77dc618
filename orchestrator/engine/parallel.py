"""Compilation proofs on spare cores: a big equivalence check runs in a forked child while the compiler goes on.

The compiler proves every optimization exact (``orchestrator.compiler.compiler.Checks``).  On a large policy
those proofs are a fifth of a compile, and they need nothing the compiler makes afterwards — so, where the
machine has a spare core and this process has no other thread (forking a threaded process can deadlock the
child on a lock another thread held), each big check runs in a ``fork()``-ed child that inherits the rules
(copy-on-write: nothing is serialized on the way in) and answers through a pipe with None or the problem text.
The compilation returns only after every answer came back clean.  A child that dies, or fails in any other way
than answering, has its check run again here, so a check is never skipped: the result is exactly the inline
one, only sooner.

``MICROSEG_COMPILE_PROCESSES``: how many checks may run beside the compiler at once (default: the usable CPUs
minus one; ``0``: every check inline, in this process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.compiler.compiler import InlineChecks

ENV = "MICROSEG_COMPILE_PROCESSES"
MIN_SIZE = 1_000  # rules in a check (both sides); below this the check costs less than a fork


@dataclass
class _Child:
    pid: int
    answer: int  # read end of its pipe
    check: Callable[[], str | None]


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def configured_processes() -> int:
    """Checks that may run beside the compiler, from ``MICROSEG_COMPILE_PROCESSES`` (default: CPUs - 1)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return max(0, usable_cpus() - 1)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: expected a whole number of processes (0: every check inline)") from None
    if value < 0:
        raise ValueError(f"{ENV}={text!r}: expected 0 or more")
    return value


class ForkedChecks(InlineChecks):
    """``Checks`` that run checks of ``min_size`` rules or more in forked children, at most ``processes`` at once;
    smaller ones, and every one while another thread runs or where ``fork`` does not exist, inline."""

    def __init__(self, processes: int | None = None, min_size: int = MIN_SIZE) -> None:
        self.processes = configured_processes() if processes is None else processes
        self.min_size = min_size
        self._running: deque[_Child] = deque()
        self._problem: str | None = None

    def check(self, size: int, check: Callable[[], str | None]) -> None:
        if size < self.min_size or self.processes <= 0 or not self._may_fork():
            super().check(size, check)
            return
        while len(self._running) >= self.processes:
            self._collect(self._running.popleft())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: answer, then leave without running anything of the parent's (no atexit, no flush)
            try:
                os.close(read)
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reaps what it started
                problem = check()
                payload = b"\x00" if problem is None else b"\x01" + problem.encode("utf-8", "replace")
                with os.fdopen(write, "wb") as pipe:
                    pipe.write(payload)
            finally:
                os._exit(0)
        os.close(write)
        self._running.append(_Child(pid, read, check))

    def finish(self) -> None:
        """Wait for every child; raise the first problem (by the order the checks were made)."""
        try:
            while self._running:
                self._collect(self._running.popleft())
        except BaseException:  # a check rerun here raised, or Ctrl-C: leave no child behind
            self.abandon()
            raise
        problem, self._problem = self._problem, None
        if problem is not None:
            raise AssertionError(problem)

    def abandon(self) -> None:
        """Stop and reap every child (the compilation failed or was interrupted)."""
        while self._running:
            child = self._running.popleft()
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.close(child.answer)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)

    def _collect(self, child: _Child) -> None:
        with os.fdopen(child.answer, "rb") as pipe:
            payload = pipe.read()  # before waiting: a long answer must not block the child on a full pipe
        _, status = os.waitpid(child.pid, 0)
        if os.waitstatus_to_exitcode(status) == 0 and payload[:1] == b"\x00":
            return
        if os.waitstatus_to_exitcode(status) == 0 and payload[:1] == b"\x01":
            problem: str | None = payload[1:].decode("utf-8", "replace")
        else:  # no answer (killed, out of memory, the check raised): the check runs here, whatever it does
            problem = child.check()
        if problem is not None and self._problem is None:
            self._problem = problem

    @staticmethod
    def _may_fork() -> bool:
        return hasattr(os, "fork") and threading.active_count() == 1
