"""Intended vs actual → safe change: the project on disk, driver registry and sessions, diff, plan, transaction
(checkpoint → apply → verify → confirm, rollback on failure), reconcile, retries, change windows and cron.

Uses every core package below it and ``orchestrator.store`` (each run is recorded); never a concrete driver.
"""
