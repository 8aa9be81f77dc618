"""The exact flow-set algebra: intervals, cubes and their index, flow sets, rule shapes, address indexes.

Uses only ``orchestrator.model`` (the rules it reasons about).  Exact, no I/O.
"""
