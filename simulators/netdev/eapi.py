"""eAPI of the simulated Arista EOS switch (a test double): JSON-RPC ``runCmds`` over HTTPS on ``/command-api``.

The commands run on the same device state as the SSH sessions (the EOS personality), so a change made over
eAPI is what ``show`` over SSH prints and the other way round.  What it follows, and from where:

* the request and response objects — ``{"jsonrpc": "2.0", "method": "runCmds", "params": {"version": 1,
  "cmds": [...], "format": "json"|"text"}, "id": ...}``; a result per command, ``{"output": text}`` in text
  format; on failure an ``error`` with ``code``, ``message`` ``"CLI command N of M 'CMD' failed: ..."`` and
  ``data`` (the results before it, then ``{"errors": [...]}``) — as Arista's Command API guide describes them
  and as pyeapi (``pyeapi.eapilib``, the unmodified client) reads them; codes 1002 (invalid command) and 1003
  (a command without a JSON form, asked for as JSON);
* HTTP Basic authentication, 401 otherwise; commands given as ``{"cmd": ..., "input": ...}`` (pyeapi sends
  ``enable`` that way);
* the JSON of the commands napalm's EOS driver reads (``napalm/eos/eos.py``): ``show version`` (``version``,
  ``uptime`` in seconds, ``modelName``), ``show hostname``, ``show configuration sessions [detail]``
  (``sessions`` by name with ``state`` ``pending`` or ``pendingCommitTimer`` and ``commitBy`` in uptime
  seconds — the pre-4.32 form, as this simulator reports 4.31.2F);
* configuration sessions outlive the request that opened them (``configure session NAME`` in one call, ``show
  session-config named NAME diffs`` and ``configure session NAME commit timer HH:MM:SS`` in later ones), and a
  commit timer that runs out restores the running configuration — the personality's own sessions and timers.

Fault knobs (``device.faults``) apply as over SSH: ``drop_after_config_lines`` closes the connection without an
answer before that configuration line runs (the ones before it ran), ``reject`` refuses a matching
configuration line with invalid input, ``garbage`` answers a command's text instead of running it, and
``drop_after_command`` runs a matching command, then closes the connection without an answer.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from simulators.https import serving_https
from simulators.netdev.personality import CliError, SessionEnd

if TYPE_CHECKING:
    from simulators.netdev.eos_config import EosDevice
    from simulators.netdev.server import DeviceSimulator

VERSION = "4.31.2F"
MAX_BODY = 4 * 1024 * 1024


class _Failed(Exception):
    def __init__(self, code: int, reason: str, errors: list[str]) -> None:
        super().__init__(reason)
        self.code, self.reason, self.errors = code, reason, errors


class EapiHandler(BaseHTTPRequestHandler):
    """One HTTP request: authenticate, run every command of a ``runCmds`` call in one console session."""

    device: ClassVar[DeviceSimulator]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/command-api":
            return self._send(404, {"error": "not found"})
        if not self._authenticated():
            return self._send(401, "Unauthorized", content_type="text/plain")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(413, {"error": "request too large"})
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._send(400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}})
        if not isinstance(request, dict) or request.get("method") != "runCmds":
            return self._send(200, {"jsonrpc": "2.0", "id": (request or {}).get("id") if isinstance(request, dict)
                                    else None, "error": {"code": -32601, "message": "Method not found"}})
        params = request.get("params") or {}
        answer = self._run(list(params.get("cmds") or []), str(params.get("format") or "json"))
        if answer is None:  # the connection dropped (fault injection): no answer at all
            self.close_connection = True
            self.connection.close()
            return None
        return self._send(200, {"jsonrpc": "2.0", "id": request.get("id"), **answer})

    def _authenticated(self) -> bool:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.device.username and password == self.device.password

    def _run(self, commands: list[Any], encoding: str) -> dict[str, Any] | None:
        device = self.device
        results: list[dict[str, Any]] = []
        with device.lock:  # what every personality call expects
            console = device.personality_cls(device)
            for index, item in enumerate(commands):
                text = str(item.get("cmd", "")) if isinstance(item, dict) else str(item)
                command = text.strip()
                config = bool(command) and console.in_config_mode()
                if config and device.faults.take_drop():
                    return None
                device.counters.commands += bool(command)
                device.counters.config_lines += config
                if command:
                    device.history.append(command)
                try:
                    results.append(self._one(console, text, command, config, encoding))
                    pattern = device.faults.drop_after_command
                    if pattern is not None and re.search(pattern, command):
                        device.faults.drop_after_command = None
                        return None  # it ran; the answer is lost with the connection
                except _Failed as failed:
                    message = f"CLI command {index + 1} of {len(commands)} '{command}' failed: {failed.reason}"
                    return {"error": {"code": failed.code, "message": message,
                                      "data": [*results, {"errors": failed.errors}]}}
        # sessions are not discarded when the request ends: on EOS they outlive the eAPI call that opened them
        return {"result": results}

    def _one(self, console: Any, text: str, command: str, config: bool, encoding: str) -> dict[str, Any]:
        faults = self.device.faults
        if command in faults.garbage:
            return {"output": faults.garbage[command]}
        if config and faults.take_reject(command):
            raise _Failed(1002, "invalid command", ["Invalid input (at token 0)"])
        if encoding == "json" and command.startswith("show"):
            structured = self._json(command)
            if structured is None:
                raise _Failed(1003, "unconverted command", ["This is an unconverted command"])
            return structured
        try:
            output = console.execute(text)
        except CliError as error:
            raise _Failed(1002, "invalid command", [console.error_output(text, error).strip()]) from error
        except SessionEnd:
            output = ""
        if output.lstrip().startswith("%"):  # EOS's own refusals (a session not found, a pending timer …)
            raise _Failed(1002, "invalid command", [output.strip()])
        if encoding == "text":
            return {"output": output if not output or output.endswith("\n") else output + "\n"}
        return {"messages": [output]} if output.strip() else {}

    # -- JSON models of the commands napalm reads -----------------------------------------------------------------

    def _json(self, command: str) -> dict[str, Any] | None:
        device = self.device
        db: EosDevice = device.state
        uptime = self._sim_seconds(time.monotonic())
        words = command.split()[1:]
        if words == ["version"]:
            return {"modelName": "vEOS-lab", "internalVersion": f"{VERSION}-simulated", "version": VERSION,
                    "systemMacAddress": "50:00:00:00:00:01", "serialNumber": f"SIM-{device.hostname}",
                    "architecture": "x86_64", "hardwareRevision": "", "isIntlVersion": False,
                    "internalBuildId": "simulated", "memTotal": 2014424, "memFree": 1104720,
                    "uptime": round(uptime, 2), "bootupTimestamp": round(time.time() - uptime, 2)}
        if words == ["hostname"]:
            return {"hostname": device.hostname, "fqdn": device.hostname}
        if words in (["configuration", "sessions"], ["configuration", "sessions", "detail"]):
            sessions: dict[str, Any] = {
                name: {"state": "pending", "commitUser": "", "description": "", "instances": {}}
                for name in db.sessions}
            for name, pending in db.pending.items():
                sessions[name] = {"state": "pendingCommitTimer", "commitUser": "", "description": "",
                                  "instances": {}, "commitBy": round(self._sim_seconds(pending.expires_at), 2)}
            return {"sessions": sessions, "maxSavedSessions": 1, "maxOpenSessions": 5}
        return None

    def _sim_seconds(self, moment: float) -> float:
        """Seconds since boot on the device's clock (its minutes last ``minute_seconds``)."""
        return (moment - self.device.booted_at) * 60.0 / self.device.minute_seconds

    def _send(self, status: int, body: Any, *, content_type: str = "application/json") -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serving_eapi(device: DeviceSimulator, ca_file: Path) -> Iterator[int]:
    """Serve ``device``'s eAPI over HTTPS on a free loopback port until the block ends; yields the port (the CA
    that signed its certificate is written to ``ca_file``)."""
    if device.personality_name != "eos":
        raise ValueError(f"eAPI is Arista EOS's: {device.hostname} is {device.personality_name}")
    handler = type("BoundEapiHandler", (EapiHandler,), {"device": device})
    with serving_https(handler, ca_file, name=f"eapi-{device.hostname}") as url:
        yield int(url.rsplit(":", 1)[1])
