"""Compilation proofs on a spare core (orchestrator.engine.parallel): the same answers as inline, never skipped."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import date

import pytest

from orchestrator.engine.parallel import ENV, ForkedChecks, configured_processes
from orchestrator.engine.project import load_project
from orchestrator.model.errors import MicrosegError
from tests.conftest import REPO


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process may fork although it is not single-threaded: the suite's earlier tests leave helper
    threads (servers, pools) running, and microseg forks only where no other thread runs.  The children here run
    pure-Python checks and ``_exit``; every other condition for forking is left as it is."""
    monkeypatch.setattr("orchestrator.engine.parallel._single_threaded", lambda: True)


_EARLIER: set[int] = set()
_SUITE = os.getpid()


def _sleep_in_a_child(seconds: float) -> None:
    """A long check in a child; a no-op should it run in the test process (the test then fails, quickly)."""
    if os.getpid() != _SUITE:
        time.sleep(seconds)


@pytest.fixture(autouse=True)
def _earlier_children() -> None:
    """The suite's process has children of its own (servers other tests started): only new ones count here."""
    _EARLIER.clear()
    _EARLIER.update(_all_children())


def _children() -> set[int]:
    """This test's children that still exist (zombies included)."""
    return _all_children() - _EARLIER


def _all_children() -> set[int]:
    """PIDs of this process's children that still exist (zombies included)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.add(int(entry))
    return found


@pytest.mark.usefixtures("forking")
def test_the_worked_example_compiles_the_same_with_every_proof_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every proof of the worked example run in a child (no size floor) gives exactly the inline compilation."""
    project = load_project(REPO / "policies", REPO / "inventory", today=date(2026, 11, 21))
    monkeypatch.setenv(ENV, "0")
    inline = project.compile()
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr("orchestrator.engine.parallel.os.fork", fork)
    monkeypatch.setattr("orchestrator.engine.project.ForkedChecks", lambda: ForkedChecks(processes=1, min_size=0))
    beside = project.compile()
    assert len(forked) >= 3, "the proofs did not run in children"
    assert {n: p.ruleset for n, p in beside.points.items()} == {n: p.ruleset for n, p in inline.points.items()}
    assert not _children()


@pytest.mark.usefixtures("forking")
def test_a_problem_found_in_a_child_fails_the_compilation_with_its_text() -> None:
    checks = ForkedChecks(processes=1, min_size=0)
    parent = os.getpid()
    checks.check(1, lambda: None if os.getpid() == parent else "optimizing sw1 changed the decision for tcp/22")
    assert _children()
    with pytest.raises(AssertionError, match="optimizing sw1 changed the decision for tcp/22"):
        checks.finish()
    assert not _children()


@pytest.mark.usefixtures("forking")
def test_a_child_that_dies_has_its_check_run_here() -> None:
    """Killed (out of memory, say) before answering: the check is not skipped — it runs in this process."""
    checks = ForkedChecks(processes=1, min_size=0)
    parent = os.getpid()
    ran_here: list[bool] = []

    def check() -> str | None:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        ran_here.append(True)
        return "carving out sw1 changed the decision for udp/53"

    checks.check(1, check)
    with pytest.raises(AssertionError, match="carving out sw1"):
        checks.finish()
    assert ran_here == [True]

    def raising() -> str | None:
        raise ValueError("a bug in a proof")

    checks.check(1, raising)
    with pytest.raises(ValueError, match="a bug in a proof"):  # rerun here: the real exception, not a lost answer
        checks.finish()
    assert not _children()


def test_no_fork_beside_another_thread_and_none_when_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forking a threaded process can deadlock the child on a lock another thread held: with another Python
    thread, or another native thread (a database library's pool, seen only in /proc/self/task), the process is
    not single-threaded and every check runs inline, as with ``MICROSEG_COMPILE_PROCESSES=0``."""
    from orchestrator.engine import parallel

    real_active, real_listdir = threading.active_count, os.listdir
    monkeypatch.setattr("orchestrator.engine.parallel.threading.active_count", lambda: 1)
    monkeypatch.setattr("orchestrator.engine.parallel.os.listdir",
                        lambda path: ["1"] if path == "/proc/self/task" else real_listdir(path))
    assert parallel._single_threaded()  # the suite's own helper threads hidden: the two checks below decide
    monkeypatch.setattr("orchestrator.engine.parallel.threading.active_count", lambda: real_active() + 1)
    assert not parallel._single_threaded()
    monkeypatch.setattr("orchestrator.engine.parallel.threading.active_count", lambda: 1)
    monkeypatch.setattr("orchestrator.engine.parallel.os.listdir",
                        lambda path: ["1", "2"] if path == "/proc/self/task" else real_listdir(path))
    assert not parallel._single_threaded()

    parent = os.getpid()
    where: list[int] = []
    ForkedChecks(processes=1, min_size=0).check(1, lambda: where.append(os.getpid()) or None)  # threaded: here
    ForkedChecks(processes=0, min_size=0).check(1, lambda: where.append(os.getpid()) or None)
    assert where == [parent, parent]
    monkeypatch.setenv(ENV, "0")
    assert configured_processes() == 0
    for bad in ("two", "-1"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(MicrosegError, match=f"MICROSEG_COMPILE_PROCESSES='{bad}': expected a whole number"):
            configured_processes()


@pytest.mark.usefixtures("forking")
def test_abandoned_checks_leave_no_child_behind() -> None:
    checks = ForkedChecks(processes=2, min_size=0)
    checks.check(1, lambda: _sleep_in_a_child(60))
    checks.check(1, lambda: _sleep_in_a_child(60))
    assert len(_children()) == 2
    started = time.monotonic()
    checks.abandon()
    assert time.monotonic() - started < 5 and not _children()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.usefixtures("forking")
def test_a_fork_that_fails_runs_the_check_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """No process to be had (a container's process limit, no memory): the proof runs here at once, no pipe is
    left open, and the compile goes on."""
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("orchestrator.engine.parallel.os.fork", no_fork)
    before = _open_fds()
    checks = ForkedChecks(processes=1, min_size=0)
    checks.check(1, lambda: None)
    with pytest.raises(AssertionError, match="found here"):
        checks.check(1, lambda: "found here")
    checks.finish()
    assert _open_fds() == before


@pytest.mark.usefixtures("forking")
def test_an_interrupted_wait_leaves_no_child_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception while waiting for an answer (Ctrl-C, a task's soft time limit) stops and reaps every child,
    the one waited for included."""
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        checks = ForkedChecks(processes=2, min_size=0)
        checks.check(1, lambda: _sleep_in_a_child(60))
        checks.check(1, lambda: _sleep_in_a_child(60))
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            checks.finish()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not _children()


@pytest.mark.usefixtures("forking")
def test_children_reaped_behind_our_back_mean_inline() -> None:
    """With SIGCHLD ignored the kernel reaps children itself (no answer could be told from a crash): every check
    runs here then; with it restored, in a child again."""
    parent = os.getpid()
    where: list[int] = []
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        ForkedChecks(processes=1, min_size=0).check(1, lambda: where.append(os.getpid()) or None)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert where == [parent]
    checks = ForkedChecks(processes=1, min_size=0)
    checks.check(1, lambda: None if os.getpid() != parent else "ran in the parent")
    checks.finish()


@pytest.mark.usefixtures("forking")
def test_a_wrong_optimization_found_by_a_child_fails_the_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """A split that loses flows, proven in a child: the compile raises what the proof found, leaves no child."""
    from orchestrator.compiler import optimize
    from orchestrator.compiler.compiler import compile_prepared

    project = load_project(REPO / "policies", REPO / "inventory", today=date(2026, 11, 21))
    real = optimize.shape_rule
    monkeypatch.setattr(optimize, "shape_rule", lambda rule, caps: real(rule, caps)[:1])  # loses pieces
    forked: list[int] = []
    real_fork = os.fork
    monkeypatch.setattr("orchestrator.engine.parallel.os.fork", lambda: forked.append(1) or real_fork())
    with pytest.raises(AssertionError, match="shaping changed the flows"):
        compile_prepared(project.prepare(), project.targets(["leaf-prod-eos", "sw-dev-ios"]), project.loaded.sources,
                         ForkedChecks(processes=1, min_size=0))
    assert forked and not _children()


@pytest.mark.usefixtures("forking")
def test_a_signal_that_raises_right_after_the_fork_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signals are held across the fork: one whose handler raises (a task queue's time limit) strikes only once
    the child is registered, so abandoning the compile stops it and closes its pipe."""
    class TimeLimit(Exception):
        pass

    def limit(*_: object) -> None:
        raise TimeLimit

    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            signal.raise_signal(signal.SIGUSR1)  # lands just after fork() returned in the parent
        return pid

    previous = signal.signal(signal.SIGUSR1, limit)
    monkeypatch.setattr("orchestrator.engine.parallel.os.fork", fork)
    before = _open_fds()
    checks = ForkedChecks(processes=1, min_size=0)
    try:
        with pytest.raises(TimeLimit):
            checks.check(1, lambda: _sleep_in_a_child(60))
        checks.abandon()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert not _children() and _open_fds() == before


@pytest.mark.usefixtures("forking")
def test_a_heap_the_host_froze_stays_frozen() -> None:
    """A preforking host may have frozen its start-up heap (gc.freeze): forking a proof leaves that as it was."""
    import gc

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        checks = ForkedChecks(processes=1, min_size=0)
        checks.check(1, lambda: None)
        checks.finish()
        # frozen objects freed meanwhile leave the count (a long test process frees a few); unfrozen, it is 0
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("forking")
def test_at_most_the_set_number_of_children_and_the_signal_mask_as_it_was() -> None:
    """``processes`` bounds the children alive at once (the oldest is waited for first), and forking leaves this
    process's signal mask as it found it."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    checks = ForkedChecks(processes=1, min_size=0)
    alive: list[int] = []
    for _ in range(3):
        checks.check(1, lambda: _sleep_in_a_child(0.2))
        alive.append(len(_children()))
    checks.finish()
    assert alive == [1, 1, 1] and not _children()
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask
