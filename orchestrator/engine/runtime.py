"""Process-wide settings for a one-shot run (``microseg compile``, ``plan``, ``apply`` …), made once at start.

CPython's cyclic garbage collector looks at the young objects every 700 net container allocations and at the
whole heap when enough of them survive.  Loading, compiling and rendering a large policy allocate millions of
short-lived objects that form no cycles (tuples, rules, address sets, entries), so on the 1,000- and 5,000-rule
estates of ``benchmarks/aerleon.py`` those passes were a fifth of the wall time and freed nothing that
reference counting had not freed already.  A one-shot command therefore collects far less often — still
collecting, so a cycle cannot pile up without bound — at the cost of a few megabytes of peak memory (130 → 140
MB on the 5,000-rule estate).  The servers (``serve``, ``worker``) keep CPython's defaults; any other command,
``collect --listen`` included, collects at this threshold (so its memory stays bounded too).
"""

from __future__ import annotations

import gc

BATCH_THRESHOLD = 20_000  # young-generation allocations between collections (CPython's default: 700)


def batch_gc() -> None:
    """Collect garbage rarely, as a one-shot command that allocates much and keeps little wants; the older
    generations keep CPython's ratios (a full pass after 10 × 10 young ones)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(BATCH_THRESHOLD, older, oldest)
