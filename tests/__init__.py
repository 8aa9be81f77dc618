"""microseg test suite."""
