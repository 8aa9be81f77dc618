"""Juniper Junos over NETCONF through napalm's own Junos driver (``transport: napalm``), errors translated once, here.

napalm (on PyEZ and ncclient) does the transactional part the way it does for every Junos user, with
``config_private``: ``load_merge_candidate`` opens a private candidate (``<open-configuration><private/>``) and
loads the ``set`` lines into it (a refused line discards it: the device never saw the change),
``compare_config`` is the candidate's diff, ``commit_config(revert_in=…)`` is ``commit confirmed N`` (Junos rolls
back by itself unless a commit follows), then the private candidate is closed.  What napalm does not do our
way is done with PyEZ RPCs on the same NETCONF session (no second connection):

* reading: ``<get-configuration database="committed" format="set">`` with a subtree filter of the hierarchy a
  CLI fetch command shows (:data:`drivers.juniper_junos.syntax.CONFIG_SECTIONS`) — the very ``set`` lines the
  CLI transport reads, so both transports parse with one parser;
* confirming: a commit in a private candidate of its own (napalm's ``confirm_commit`` commits the shared
  candidate, which would activate someone else's uncommitted edits along with the confirmation).

Host keys are verified as for the CLI (``host_key_policy``, ``known_hosts``): PyEZ and ncclient do not verify
them by default, so the transport turns verification on and points ncclient at the point's known_hosts file
(through an ssh_config of its own); under ``accept-new`` an unknown host's key is first recorded from a bare
key exchange (no login), then the NETCONF session is verified against the file like any other.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from drivers.endpoints import causes, connection_refused, refused_message
from drivers.juniper_junos import syntax
from drivers.netacl.errors import RejectedLine
from drivers.sshtrust import INSECURE, HostKeyRefused, HostKeyTrust, known_hosts_name
from orchestrator.model import Connection, DriverError, PermanentDriverError, TransientDriverError

T = TypeVar("T")


class NapalmJunosTransport:
    """One lazily opened napalm Junos connection (NETCONF over SSH); every method raises only DriverError
    subclasses."""

    def __init__(self, connection: Connection, *, point: str, driver: str, timeout: float, port: int,
                 host_keys: HostKeyTrust, key_file: str | None = None,
                 factory: Callable[..., Any] | None = None) -> None:
        self.connection = connection
        self.point = point
        self.driver = driver
        self.timeout = timeout
        self.port = port
        self.host_keys = host_keys
        self.key_file = key_file
        self._factory = factory
        self._device: Any = None
        self.lines_sent = 0
        #: the last push sent its commit (it may have run even when its answer was lost): it needs confirming
        self.commit_sent = False

    def device(self) -> Any:
        if self._device is None:
            self._device = self._guard("connect over NETCONF", self._open)
        return self._device

    def _open(self) -> Any:
        factory = self._factory
        if factory is None:
            from napalm import get_network_driver  # noqa: PLC0415  (napalm loads on first use)

            factory = get_network_driver("junos")
        host = self.connection.hostname
        if self.key_file and not os.path.exists(self.key_file):
            raise PermanentDriverError(f"{self.point}: SSH key file {self.key_file} does not exist (settings.key_file)",
                                       point=self.point, driver=self.driver)
        if ":" in host:  # PyEZ refuses a bare IPv6 address, and a bracketed one does not resolve
            raise PermanentDriverError(f"{self.point}: transport napalm (NETCONF through PyEZ) cannot reach an IPv6 "
                                       f"address ({host}): give the device's DNS name as its hostname",
                                       point=self.point, driver=self.driver)
        ssh_config = self._own_ssh_config()
        try:
            # the private candidate is opened and closed here (napalm's config_private would load into the shared
            # candidate when opening the private one fails); no session lock: a private candidate needs none.
            # Warnings (a delete of a statement already gone) are not errors, as over the CLI.
            optional: dict[str, Any] = {"port": self.port, "lock_disable": True, "keepalive": 0,
                                        "ignore_warning": True, "ssh_config_file": ssh_config}
            if self.key_file:
                optional["key_file"] = self.key_file
            device = factory(host, self.connection.username or "", self.connection.password or "",
                             timeout=max(1, round(self.timeout)), optional_args=optional)
            pyez = device.device
            pyez._look_for_keys = False  # the point's key or password only, never whatever sits in ~/.ssh
            pyez._allow_agent = False
            pyez._conn_open_timeout = max(1, round(self.timeout))
            if self.host_keys.policy != INSECURE:
                pyez._hostkey_verify = True
                self._record_unknown_key()
            self._connect(device)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(ssh_config)  # read by PyEZ and ncclient while connecting, not after
        return device

    def _connect(self, device: Any) -> None:
        try:
            device.open()
        except Exception as exc:  # PyEZ reports ncclient's host-key refusal as a refused connection
            from ncclient.transport.errors import SSHUnknownHostError  # noqa: PLC0415

            refused = next((c for c in causes(exc) if isinstance(c, SSHUnknownHostError)), None)
            if refused is None:
                raise
            host, port = self.connection.hostname, self.port
            raise HostKeyRefused(
                f"host key rejected: {host}:{port} presented a key ({refused.fingerprint}) that "
                f"{self.host_keys.known_hosts} does not hold for {known_hosts_name(host, port)} — someone may be "
                f"intercepting the connection; if the host was really re-keyed, check the new fingerprint out of "
                f"band and replace that line") from exc

    # ------------------------------------------------------------ host keys

    def _own_ssh_config(self) -> str:
        """An ssh_config of this connection only (never the user's ``~/.ssh/config``, which would change port,
        user and key as the CLI transport never does): its one setting points ncclient at the known_hosts."""
        handle, path = tempfile.mkstemp(prefix="microseg-netconf-", suffix=".ssh_config")
        with os.fdopen(handle, "w") as out:
            out.write("Host *\n")
            if self.host_keys.known_hosts is not None:
                out.write(f"    UserKnownHostsFile {self.host_keys.known_hosts}\n")
        return path

    def _record_unknown_key(self) -> None:
        """``accept-new``: a host known_hosts does not name gets its key recorded from a bare key exchange
        (no authentication); ``strict`` refuses it here, naming the key it presented."""
        import paramiko  # noqa: PLC0415

        host, port = self.connection.hostname, self.port
        known = self.host_keys.loadable_known_hosts()
        if known is not None and paramiko.HostKeys(str(known)).lookup(known_hosts_name(host, port)) is not None:
            return  # known: the NETCONF session itself is verified against it
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except OSError as exc:
            if connection_refused(exc):
                raise PermanentDriverError(f"{self.point}: {refused_message(host, port)}", point=self.point,
                                           driver=self.driver) from exc
            raise TransientDriverError(f"{self.point}: cannot reach {host}:{port} for NETCONF: {exc}",
                                       point=self.point, driver=self.driver) from exc
        try:
            with contextlib.closing(paramiko.Transport(sock)) as transport:
                transport.start_client(timeout=self.timeout)
                key = transport.get_remote_server_key()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransientDriverError(f"{self.point}: no SSH key exchange with {host}:{port}: {exc}",
                                       point=self.point, driver=self.driver) from exc
        finally:
            sock.close()
        self.host_keys.unknown_key(host, port, key)

    # ------------------------------------------------------------ what the driver calls

    def show(self, command: str) -> str:
        """A CLI fetch command's text: the configuration hierarchy it shows, read as ``set`` lines over NETCONF;
        other commands through ``<command>``."""
        section = syntax.CONFIG_SECTIONS.get(command)
        if section is None:
            output = self._guard(f"`{command}`", lambda: self.device().cli([command]))
            return str(output[command])
        xml = "<configuration>" + "".join(f"<{s}>" for s in section) + \
            "".join(f"</{s}>" for s in reversed(section)) + "</configuration>"

        def read() -> str:
            reply = self.device().device.rpc.get_config(filter_xml=xml, options={
                "database": "committed", "format": "set"})
            if getattr(reply, "tag", None) != "configuration-set":
                raise PermanentDriverError(f"{self.point}: `{command}` over NETCONF: the device answered "
                                           f"<{getattr(reply, 'tag', type(reply).__name__)}>, not "
                                           "<configuration-set>", point=self.point, driver=self.driver)
            return str(reply.text or "")

        return self._guard(f"`{command}`", read)

    def push(self, lines: Sequence[str], confirm_minutes: int) -> str:
        """Load ``lines`` into a private candidate and ``commit confirmed`` it; the candidate's diff is the
        answer.  A refused line discards the candidate: nothing changed."""
        def load_and_commit() -> str:
            from jnpr.junos.exception import CommitError  # noqa: PLC0415

            device = self.device()
            with self._private(device.device):
                device.load_merge_candidate(config="\n".join(lines))
                self.lines_sent += len(lines)
                diff = str(device.compare_config())
                self.commit_sent = True  # from here on the change may be active, answer or not
                try:
                    device.commit_config(revert_in=confirm_minutes * 60)
                except CommitError as exc:  # an error the device answered (not a lost answer): nothing committed
                    self.commit_sent = not any(str(e.get("severity")) == "error" for e in _errors(exc.errs))
                    raise
            return diff

        self.commit_sent = False

        return self._guard("load and commit the change", load_and_commit, lines=lines)

    def confirm(self) -> None:
        """Confirm a pending ``commit confirmed``: lock the candidate (refused while it holds someone's
        uncommitted edits, so only our change is ever confirmed), commit it unchanged, unlock."""
        def commit_locked() -> None:
            pyez = self.device().device
            pyez.cu.lock()
            try:
                pyez.cu.commit(ignore_warning=True)
            finally:
                with contextlib.suppress(Exception):  # a lost session releases the lock by itself
                    pyez.cu.unlock()

        self._guard("confirm the commit", commit_locked)
        self.commit_sent = False

    @contextlib.contextmanager
    def _private(self, pyez: Any) -> Iterator[None]:
        """``configure private`` for the block: refused (an error, nothing loaded) while the shared candidate
        holds someone's uncommitted edits; Junos's warning that uncommitted changes die on exit is expected."""
        pyez.rpc.open_configuration(private=True, ignore_warning="uncommitted changes will be discarded on exit")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a lost session discards the private candidate by itself
                pyez.rpc.close_configuration()

    def close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            with contextlib.suppress(Exception):  # the private candidate dies with the session: best effort
                device.close()

    # ------------------------------------------------------------ errors

    def _guard(self, what: str, fn: Callable[[], T], *, lines: Sequence[str] = ()) -> T:
        from jnpr.junos import exception as pyez_errors  # noqa: PLC0415
        from napalm.base import exceptions as napalm_errors  # noqa: PLC0415
        from ncclient.transport import errors as nc_errors  # noqa: PLC0415

        try:
            return fn()
        except HostKeyRefused as exc:
            self._drop()
            raise PermanentDriverError(f"{self.point}: {exc}", point=self.point, driver=self.driver) from exc
        except DriverError:  # already translated (the connection, opened inside another call)
            raise
        except (napalm_errors.MergeConfigException, napalm_errors.ReplaceConfigException) as exc:
            errors = _errors(exc.args[0] if exc.args else None)
            first = next((e for e in errors if e.get("bad_element")), {})
            line = _refused_line(lines, str(first.get("bad_element") or ""), str(first.get("edit_path") or ""))
            bad = str(first.get("bad_element") or "")
            detail = "; ".join(f"{e.get('edit_path') or ''} {e.get('message')}".strip() for e in errors) or str(exc)
            raise RejectedLine(f"{self.point}: the device refused `{line or bad}` (NETCONF): {detail}", line=line,
                               point=self.point, driver=self.driver) from exc
        except (pyez_errors.ConnectAuthError, nc_errors.AuthenticationError) as exc:
            self._drop()
            raise PermanentDriverError(f"{self.point}: NETCONF authentication failed", point=self.point,
                                       driver=self.driver) from exc
        except pyez_errors.ConnectRefusedError as exc:
            self._drop()
            raise PermanentDriverError(f"{self.point}: NETCONF connection refused by {self.connection.hostname}:"
                                       f"{self.port} (is `set system services netconf ssh` configured?)",
                                       point=self.point, driver=self.driver) from exc
        except (pyez_errors.LockError, napalm_errors.LockError) as exc:
            raise TransientDriverError(f"{self.point}: {what}: the configuration is locked ({exc})",
                                       point=self.point, driver=self.driver) from exc
        except pyez_errors.RpcTimeoutError as exc:  # slow, or an answer ncclient could not parse (it drops those)
            self._drop()
            raise TransientDriverError(f"{self.point}: {what}: no NETCONF answer within {self.timeout:g} s (a "
                                       "device that answers something other than NETCONF looks the same)",
                                       point=self.point, driver=self.driver) from exc
        except (pyez_errors.CommitError, napalm_errors.CommitError, pyez_errors.RpcError) as exc:
            if "database modified" in str(exc) or "locked by" in str(exc):
                raise TransientDriverError(f"{self.point}: {what}: someone else's uncommitted edits or lock are "
                                           f"in the configuration database ({exc})", point=self.point,
                                           driver=self.driver) from exc
            if _connection_lost(exc):
                self._drop()
                raise TransientDriverError(f"{self.point}: {what}: NETCONF connection lost ({exc})",
                                           point=self.point, driver=self.driver) from exc
            raise PermanentDriverError(f"{self.point}: {what}: the device answered an error (NETCONF): {exc}",
                                       point=self.point, driver=self.driver) from exc
        except (pyez_errors.ConnectError, nc_errors.TransportError, napalm_errors.ConnectionException,
                OSError, EOFError, ValueError) as exc:
            self._drop()
            raise TransientDriverError(f"{self.point}: {what}: NETCONF connection lost ({type(exc).__name__}: "
                                       f"{str(exc)[:300]})", point=self.point, driver=self.driver) from exc
        except Exception as exc:  # lxml or PyEZ on an answer that is not NETCONF: the device answered garbage
            self._drop()
            raise PermanentDriverError(f"{self.point}: {what}: the device's NETCONF answer cannot be read "
                                       f"({type(exc).__name__}: {str(exc)[:300]})", point=self.point,
                                       driver=self.driver) from exc

    def _drop(self) -> None:
        """Forget a broken connection so that the next call reconnects."""
        device, self._device = self._device, None
        if device is not None:
            with contextlib.suppress(Exception):
                device.device.close()


def _errors(errs: Any) -> list[dict[str, Any]]:
    """PyEZ's and napalm's parsed ``rpc-error``s (a dict or a list of dicts)."""
    items = errs if isinstance(errs, list) else [errs]
    return [e for e in items if isinstance(e, dict)]


def _refused_line(lines: Sequence[str], bad: str, edit_path: str) -> str:
    """The loaded line Junos refused: the one holding the offending token under the hierarchy it names
    (``[edit firewall family inet filter F term T from]`` and ``5432``), else the first holding the token."""
    where = edit_path.strip("[]").split()[1:]
    holding = [line for line in lines if bad and bad in line.split()]
    return next((line for line in holding if line.split()[1:1 + len(where)] == where), holding[0] if holding else "")


def _connection_lost(exc: BaseException) -> bool:
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError | EOFError) or type(current).__name__ in (
                "SessionCloseError", "TransportError", "ConnectClosedError"):
            return True
        current = current.__cause__ or current.__context__
    return False

