"""Built-in microseg drivers.

Drivers register through the entry-point group named by
``orchestrator.engine.registry.DRIVER_ENTRY_POINT_GROUP`` so a third party can ship a
driver as its own package.  The built-in registry is empty until the first
driver lands.
"""
