"""``microseg serve``: the HTTP API for ticket-triggered change requests, and its scheduler.

Uses the engine, the store and ``orchestrator.config``; the command line (``microseg serve``) sits above it.
Import the application from ``orchestrator.api.app``; this package itself stays light.
"""
