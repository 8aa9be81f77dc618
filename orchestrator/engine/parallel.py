"""Compilation proofs on spare cores: a big equivalence check runs in a forked child while the compiler goes on.

The compiler proves every optimization exact (``orchestrator.compiler.compiler.Checks``).  On a large policy
those proofs are a fifth of a compile, and they need nothing the compiler makes afterwards — so, where the
machine has a spare core and this process runs no other thread (forking a threaded process can deadlock the
child on a lock another thread held; native threads count too), each big check runs in a ``fork()``-ed child
that inherits the rules (copy-on-write: nothing is serialized on the way in) and answers through a pipe with
None or the problem text.  The compilation returns only after every answer came back clean.  A child that dies,
or fails in any other way than answering, has its check run again here, and a fork that fails runs it here at
once, so a check is never skipped: the result is exactly the inline one, only sooner.

``MICROSEG_COMPILE_PROCESSES``: how many checks may run beside the compiler at once (default: the usable CPUs
minus one, at most 4; ``0``: every check inline, in this process).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from orchestrator.compiler.compiler import InlineChecks
from orchestrator.model.errors import MicrosegError

ENV = "MICROSEG_COMPILE_PROCESSES"
MIN_SIZE = 1_000  # rules in a check (both sides); below this the check costs less than a fork
DEFAULT_MAX = 4  # each child may copy much of the parent's heap as it touches it: a bound on memory
# held back while forking: a handler that raises (Ctrl-C, a task queue's time limit) must not strike between the
# fork and the child's registration, in either copy
_BLOCKED = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


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
    """Checks that may run beside the compiler, from ``MICROSEG_COMPILE_PROCESSES`` (default: CPUs - 1, at most
    4)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return max(0, min(DEFAULT_MAX, usable_cpus() - 1))
    if not (text.isascii() and text.isdigit()):
        raise MicrosegError(f"{ENV}={text!r}: expected a whole number of processes, 0 or more (0: every proof "
                            "inline)")
    return int(text)


class ForkedChecks(InlineChecks):
    """``Checks`` that run checks of ``min_size`` rules or more in forked children, at most ``processes`` at once;
    smaller ones, and every one while another thread runs, where ``fork`` does not exist or children are reaped
    behind our back (SIGCHLD ignored), inline."""

    def __init__(self, processes: int | None = None, min_size: int = MIN_SIZE) -> None:
        self.processes = configured_processes() if processes is None else processes
        self.min_size = min_size
        self._running: deque[_Child] = deque()
        self._problem: str | None = None

    def check(self, size: int, check: Callable[[], str | None]) -> None:
        if size < self.min_size or self.processes <= 0 or not _may_fork():
            super().check(size, check)
            return
        while len(self._running) >= self.processes:
            self._collect_oldest()
        if self._fork(check) is None:  # no fork to be had (a process limit, no memory): the proof runs here
            super().check(size, check)

    def finish(self) -> None:
        """Wait for every child; raise the first problem (by the order the checks were made)."""
        try:
            while self._running:
                self._collect_oldest()
        except BaseException:  # a check rerun here raised, or Ctrl-C: leave no child behind
            self.abandon()
            raise
        problem, self._problem = self._problem, None
        if problem is not None:
            raise AssertionError(problem)

    def abandon(self) -> None:
        """Stop and reap every child (the compilation failed or was interrupted)."""
        self._problem = None
        while self._running:
            _stop(self._running.popleft())

    def _fork(self, check: Callable[[], str | None]) -> _Child | None:
        """Start a child for ``check`` and register it; None when no child could be had (no pipe, no process)."""
        with _signals_held():  # nothing can strike between the fork and the registration below …
            _pending_handlers()  # … not even a handler whose signal came just before the hold: it runs here
            try:
                read, write = os.pipe()
            except OSError:
                return None
            pid = -1
            try:
                pid = os.fork()
                if pid == 0:  # the child: answer, then leave without running anything of the parent's
                    _answer(read, write, check)
                os.close(write)
                write = -1
                child = _Child(pid, read, check)
                self._running.append(child)
                return child
            except BaseException as exc:
                if write >= 0:
                    os.close(write)
                if pid > 0:  # started, not registered: stop it here
                    _stop(_Child(pid, read, check))
                else:
                    os.close(read)
                if pid == -1 and isinstance(exc, OSError):  # no process to be had
                    return None
                raise

    def _collect_oldest(self) -> None:
        """Read the oldest child's answer; it stays listed (so ``abandon`` stops it) until it was reaped."""
        child = self._running[0]
        try:
            with os.fdopen(child.answer, "rb", closefd=False) as pipe:
                payload = pipe.read()  # before waiting: a long answer must not block the child on a full pipe
            try:
                _, status = os.waitpid(child.pid, 0)
                exited = os.waitstatus_to_exitcode(status) == 0
            except ChildProcessError:  # reaped by someone else: only a complete answer counts
                exited = True
        except BaseException:
            self._running.popleft()
            _stop(child)
            raise
        self._running.popleft()
        os.close(child.answer)
        if exited and payload[:1] == b"\x00":
            return
        if exited and payload[:1] == b"\x01":
            problem: str | None = payload[1:].decode("utf-8", "replace")
        else:  # no answer (killed, out of memory, the check raised): the check runs here, whatever it does
            problem = child.check()
        if problem is not None and self._problem is None:
            self._problem = problem


def _answer(read: int, write: int, check: Callable[[], str | None]) -> None:
    """The child's whole life: run ``check``, write the answer, ``_exit`` (no atexit handler, no stdio flush, no
    unwinding into the parent's frames)."""
    try:
        gc.freeze()  # the inherited heap is no concern of this process's collections: its pages stay shared
        os.close(read)
        for number in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a kill ends a child at once; the parent reaps it
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        problem = check()
        payload = b"\x00" if problem is None else b"\x01" + problem.encode("utf-8", "replace")
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
    finally:
        os._exit(0)


def _stop(child: _Child) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.close(child.answer)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child.pid, 0)


def _pending_handlers() -> None:
    """Nothing: calling a Python function is where the interpreter runs the handlers of signals already received."""


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _may_fork() -> bool:
    """Only a process with one thread whose children are its own to reap (SIGCHLD not ignored)."""
    return (hasattr(os, "fork") and signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, None)
            and _single_threaded())


def _single_threaded() -> bool:
    """No other thread, Python's or native (a database library's pool)."""
    if threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no /proc: Python's own count is all there is
        return True
