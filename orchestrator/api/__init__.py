"""``microseg serve``: the HTTP API for ticket-triggered change requests, and its scheduler.

Import the application from ``orchestrator.api.app``; this package itself stays light so that the
configuration can use ``orchestrator.api.cron`` without importing FastAPI.
"""
