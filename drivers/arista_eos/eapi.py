"""Arista EOS over eAPI through napalm's own EOS driver (``transport: napalm``), errors translated once, here.

napalm does the transactional part the way it does for every EOS user: ``load_merge_candidate`` writes the lines
into a configuration session of its own (refused as a whole when one line is invalid: the session is aborted),
``commit_config(revert_in=…)`` commits it under ``commit timer`` (EOS restores the running configuration unless
it is confirmed), ``confirm_commit`` confirms.  Reading is napalm's ``cli`` in text format over the same eAPI
connection — the very text the CLI transport reads, so both transports parse with one parser (EOS's JSON form of
``show ip access-lists`` is not used: where a public source shows it — Arista's ANTA, ``VerifyIPv4ACL`` — an
entry is ``sequence[].text``, the listing's own text, and no citable source shows its hit counters).

The certificate is always verified: against ``eapi_ca_file`` when given, else the system's trust store (pyeapi
alone would not verify it).  Credentials are the point's (inventory), never logged.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from drivers.netacl.errors import RejectedLine
from orchestrator.model import Connection, PermanentDriverError, TransientDriverError

T = TypeVar("T")
_FAILED_LINE = re.compile(r"CLI command \d+ of \d+ '(?P<line>[^']*)' failed")


class NapalmEosTransport:
    """One lazily opened napalm EOS connection (eAPI over HTTPS); every method raises only DriverError subclasses."""

    def __init__(self, connection: Connection, *, point: str, driver: str, timeout: float, port: int,
                 ca_file: str | None, factory: Callable[..., Any] | None = None) -> None:
        self.connection = connection
        self.point = point
        self.driver = driver
        self.timeout = timeout
        self.port = port
        self.ca_file = ca_file
        self._factory = factory
        self._device: Any = None
        self.lines_sent = 0
        self.session: str | None = None  # napalm's configuration session waiting for confirm_commit
        self._orphan: str | None = None  # a session a lost connection left open (aborted before the next load)

    def device(self) -> Any:
        if self._device is None:
            def open_device() -> Any:
                factory = self._factory
                if factory is None:
                    from napalm import get_network_driver  # noqa: PLC0415  (napalm loads on first use)

                    factory = get_network_driver("eos")
                context = ssl.create_default_context(cafile=self.ca_file)  # verified, always
                device = factory(self.connection.hostname, self.connection.username or "",
                                 self.connection.password or "", timeout=max(1, round(self.timeout)),
                                 optional_args={"transport": "https", "port": self.port, "context": context})
                device.open()
                return device

            self._device = self._guard("connect over eAPI", open_device)
        return self._device

    # ------------------------------------------------------------ what the driver calls

    def show(self, command: str) -> str:
        output = self._guard(f"`{command}`", lambda: self.device().cli([command], encoding="text"))
        return str(output[command])

    def push(self, lines: Sequence[str], confirm_minutes: int) -> str:
        """Load ``lines`` into a napalm configuration session and commit it under a ``confirm_minutes`` timer;
        the session's diff is the answer.  A refused line aborts the session: nothing changed."""
        def load_and_commit() -> str:
            from pyeapi.eapilib import CommandError  # noqa: PLC0415

            device = self.device()
            if self._orphan is not None:  # a push cut off mid-way left its session open: abort it first
                device.config_session = self._orphan
                with contextlib.suppress(CommandError):  # committed and confirmed, or gone, since: nothing to do
                    device.discard_config()
                device.config_session, self._orphan = None, None
            try:
                device.load_merge_candidate(config="\n".join(lines))
                self.lines_sent += len(lines)
                diff = str(device.compare_config())
                self.session = device.config_session  # known before the commit: a commit whose answer is lost
                device.commit_config(revert_in=confirm_minutes * 60)  # can still be confirmed
            except Exception:
                self._orphan = device.config_session  # napalm clears it when it aborted the session itself
                raise
            return diff

        return self._guard("load and commit the change", load_and_commit)

    def confirm(self) -> None:
        """Confirm the pending commit (before its timer restores the device)."""
        if self.session is None:
            return

        def confirm_commit() -> None:
            device = self.device()
            device.config_session = self.session  # a reconnected device object confirms the same session
            device.confirm_commit()

        self._guard("confirm the commit", confirm_commit)
        if self._orphan == self.session:  # the push whose answer was lost did commit: nothing left to abort
            self._orphan = None
        self.session = None

    def close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            with contextlib.suppress(Exception):  # close aborts an unconfirmed napalm session: best effort
                device.close()

    # ------------------------------------------------------------ errors

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        from napalm.base import exceptions as napalm_errors  # noqa: PLC0415
        from pyeapi.eapilib import CommandError, EapiError  # noqa: PLC0415

        try:
            return fn()
        except (napalm_errors.MergeConfigException, napalm_errors.ReplaceConfigException) as exc:
            match = _FAILED_LINE.search(str(exc))
            line = match.group("line") if match else ""
            raise RejectedLine(f"{self.point}: the device refused `{line}` (eAPI): {exc}", line=line,
                               point=self.point, driver=self.driver) from exc
        except napalm_errors.SessionLockedException as exc:
            raise TransientDriverError(f"{self.point}: {what}: another configuration session is pending ({exc})",
                                       point=self.point, driver=self.driver) from exc
        except (CommandError, napalm_errors.CommandErrorException, napalm_errors.CommitError) as exc:
            raise PermanentDriverError(f"{self.point}: {what}: the device answered an error (eAPI): {exc}",
                                       point=self.point, driver=self.driver) from exc
        except (EapiError, napalm_errors.ConnectionException, OSError, ValueError) as exc:
            text = str(exc)
            self._drop()
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                raise PermanentDriverError(
                    f"{self.point}: eAPI's TLS certificate is not trusted (give its CA in settings eapi_ca_file, or "
                    f"install it in the system trust store): {text}", point=self.point, driver=self.driver) from exc
            if "Unauthorized" in text:
                raise PermanentDriverError(f"{self.point}: eAPI authentication failed", point=self.point,
                                           driver=self.driver) from exc
            raise TransientDriverError(f"{self.point}: {what}: eAPI connection lost ({type(exc).__name__}: "
                                       f"{text[:300]})", point=self.point, driver=self.driver) from exc

    def _drop(self) -> None:
        """Forget a broken connection so the next call reconnects (eAPI is stateless: nothing to close).  Its
        session is forgotten too, so that napalm's ``__del__`` does not try to abort it over a dead link."""
        device, self._device = self._device, None
        if device is not None:
            device.config_session = None
