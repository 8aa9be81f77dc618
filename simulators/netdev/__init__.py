"""SSH network-device simulators: test doubles for the switch drivers, never the production path."""
