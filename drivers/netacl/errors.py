"""Errors the switch drivers share, apart from the transport so that importing a driver does not load netmiko."""

from __future__ import annotations

from orchestrator.model import PermanentDriverError


class RejectedLine(PermanentDriverError):
    """The device refused one configuration line (invalid input); ``line`` is the refused line."""

    def __init__(self, message: str, *, line: str, point: str, driver: str) -> None:
        super().__init__(message, point=point, driver=driver)
        self.line = line
