"""microseg core: policy model, inventory, packet-space algebra and compiler."""

from __future__ import annotations

__version__ = "0.1.0"
