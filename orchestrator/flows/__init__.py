"""Observed flows: sources, the flow store, discover and simulate."""
