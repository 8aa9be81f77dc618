"""The ``microseg`` command line: one module per command family, with shared options and output helpers.

Uses every package of ``orchestrator`` (it is the top of the layers).  The entry point is
``orchestrator.cli.main:main``.
"""
