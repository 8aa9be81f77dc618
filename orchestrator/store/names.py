"""Names shared by the store's tables and its light-weight checks (no SQLAlchemy here)."""

from __future__ import annotations

CHANGE_REQUESTS_TABLE = "change_requests"
