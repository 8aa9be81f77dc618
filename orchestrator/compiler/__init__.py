"""Policy → intended rulesets: resolve selectors, compile per point, optimize, return paths, lint, check-flow.

Uses ``orchestrator.model``, ``orchestrator.policy``, ``orchestrator.inventory`` and ``orchestrator.packetspace``.
Pure: no I/O.
"""
