"""NETCONF over SSH of the simulated Junos device (a test double): the ``netconf`` SSH subsystem.

The RPCs run on the same device state as the CLI sessions (the Junos personality: its shared, exclusive and
private candidates, rollback history and ``commit confirmed`` timer), so a change loaded over NETCONF is what
``show configuration`` over the CLI prints, and the other way round.  What it follows, and from where:

* RFC 6242: NETCONF as the SSH subsystem ``netconf``; RFC 6241: ``<hello>`` with capabilities and a
  ``session-id``, ``<rpc message-id>`` / ``<rpc-reply>`` in the base namespace, ``<ok/>``, ``<rpc-error>``
  (``error-type``, ``error-tag``, ``error-severity``, ``error-message``, ``error-info``), the base:1.0
  end-of-message delimiter ``]]>]]>`` (Junos advertises base:1.0, so the clients frame with it too),
  ``<close-session/>``, ``<lock>``/``<unlock>`` of the candidate and ``<discard-changes/>``;
* Juniper's *NETCONF XML Management Protocol Developer Guide* for the Junos RPCs: ``<lock-configuration/>`` and
  ``<unlock-configuration/>`` (the exclusive candidate; refused while another session holds it or the shared
  candidate has uncommitted changes; unlocking discards what was not committed), ``<open-configuration>
  <private/>`` and ``<close-configuration/>``; ``<load-configuration action="set" format="text">`` with
  ``<configuration-set>`` lines, ``action="merge"|"override"`` with ``<configuration-text>`` (curly-brace text),
  ``rollback="N"``, answered ``<load-configuration-results>`` with ``<ok/>`` or ``<rpc-error>`` and
  ``<load-error-count>``; ``<get-configuration database="committed"|"candidate" format="set"|"text">`` with a
  ``<configuration>`` subtree filter, answered ``<configuration-set>`` / ``<configuration-text>``, and
  ``compare="rollback" rollback="N"`` answered ``<configuration-information><configuration-output>``;
  ``<commit-configuration>`` with ``<check/>``, ``<confirmed/>``, ``<confirm-timeout>`` and ``<log>``, answered
  ``<commit-results><routing-engine><name>re0</name><commit-success/>`` (a plain commit confirms a pending
  ``commit confirmed``); ``<command format="text">`` answered ``<output>``;
* what the unmodified clients send and read: ncclient's ``junos`` device handler, PyEZ
  (``jnpr.junos.utils.config.Config``: ``lock``, ``load(format="set"|"text")``, ``diff``, ``commit(confirm=N)``,
  ``rollback``, ``unlock``) and napalm's ``junos`` driver on top of them.

XML format answers of ``get-configuration`` are not modelled (an ``rpc-error`` says so).  Fault knobs
(``device.faults``) apply as over the CLI: ``drop_after_config_lines`` resets the connection before that loaded
line runs (the ones before it ran), ``pause_after_config_lines`` holds it, ``reject`` refuses a matching loaded
line, ``delay`` slows every answer, ``garbage`` answers an RPC (by its element name) with that text instead of
XML, ``drop_after_command`` runs a matching RPC (by element name) and closes without answering, and
``refuse_commit`` fails the next commit with its message.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from simulators.netdev.junos import JunosPersonality, _tokens
from simulators.netdev.junos_config import (
    JunosCliError,
    braces,
    compare,
    display_set,
    parse_path,
    same,
    walk,
)

if TYPE_CHECKING:
    import paramiko

    from simulators.netdev.session import Session

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
EOM = b"]]>]]>"
MAX_MESSAGE = 16 * 1024 * 1024
CAPABILITIES = (
    "urn:ietf:params:netconf:base:1.0",
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.0",
    "urn:ietf:params:netconf:capability:validate:1.0",
    "urn:ietf:params:xml:ns:netconf:base:1.0",
    "urn:ietf:params:xml:ns:netconf:capability:candidate:1.0",
    "urn:ietf:params:xml:ns:netconf:capability:confirmed-commit:1.0",
    "http://xml.juniper.net/netconf/junos/1.0",
    "http://xml.juniper.net/dmi/system/1.0",
)
JUNOS_NS = "http://xml.juniper.net/junos/21.4R0/junos"
_SESSION_IDS = itertools.count(20000)
_IDS_LOCK = threading.Lock()
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)


class RpcFailure(Exception):
    """An ``<rpc-error>`` to answer (``wrap``: the element the error sits in, e.g. load-configuration-results)."""

    def __init__(self, message: str, *, tag: str = "operation-failed", bad_element: str | None = None,
                 path: str | None = None, wrap: str | None = None) -> None:
        super().__init__(message)
        self.message, self.tag, self.bad_element, self.path, self.wrap = message, tag, bad_element, path, wrap

    def xml(self) -> str:
        info = f"<error-info><bad-element>{escape(self.bad_element)}</bad-element></error-info>" \
            if self.bad_element else ""
        path = f"<error-path>{escape(self.path)}</error-path>" if self.path else ""
        error = (f"<rpc-error><error-type>protocol</error-type><error-tag>{self.tag}</error-tag>"
                 f"<error-severity>error</error-severity>{path}<error-message>{escape(self.message)}</error-message>"
                 f"{info}</rpc-error>")
        if self.wrap == "load-configuration-results":
            return f"<{self.wrap}>{error}<load-error-count>1</load-error-count></{self.wrap}>"
        return f"<{self.wrap}>{error}</{self.wrap}>" if self.wrap else error


class _Closed(Exception):
    """The client closed the session (``<close-session/>`` or EOF)."""


def serve_netconf(session: Session, chan: paramiko.Channel) -> None:
    """Serve one NETCONF session on ``chan`` until the client closes it (the SSH session thread runs this)."""
    with session.device.lock:
        personality = JunosPersonality(session.device)
    session.personality = personality  # the SSH session discards its candidate when the connection ends
    NetconfSession(session, chan, personality).serve()


class NetconfSession:
    def __init__(self, session: Session, chan: paramiko.Channel, personality: JunosPersonality) -> None:
        self.session = session
        self.device = session.device
        self.chan = chan
        self.junos = personality
        self.buffer = b""
        with _IDS_LOCK:
            self.session_id = next(_SESSION_IDS)

    # -- framing ----------------------------------------------------------------------------------------------

    def serve(self) -> None:
        capabilities = "".join(f"<capability>{c}</capability>" for c in CAPABILITIES)
        self._send(f'<hello xmlns="{BASE_NS}"><capabilities>{capabilities}</capabilities>'
                   f"<session-id>{self.session_id}</session-id></hello>")
        try:
            hello = self._read()
            if etree.QName(etree.fromstring(hello, _PARSER)).localname != "hello":
                return
            while not self.device._stopping.is_set():
                self._message(self._read())
        except (_Closed, etree.XMLSyntaxError):
            return

    def _read(self) -> bytes:
        while EOM not in self.buffer:
            if len(self.buffer) > MAX_MESSAGE:
                raise _Closed
            data = self.chan.recv(65536)
            if not data:
                raise _Closed
            self.buffer += data
        message, _, self.buffer = self.buffer.partition(EOM)
        return message.strip()

    def _send(self, xml: str) -> None:
        self.chan.sendall(xml.encode() + b"\n" + EOM)

    # -- RPCs -------------------------------------------------------------------------------------------------

    def _message(self, data: bytes) -> None:
        rpc = etree.fromstring(data, _PARSER)
        message_id = rpc.get("message-id", "")
        operations = [child for child in rpc if isinstance(child.tag, str)]
        head = f'<rpc-reply xmlns="{BASE_NS}" xmlns:junos="{JUNOS_NS}" message-id={quoteattr(message_id)}>'
        if etree.QName(rpc).localname != "rpc" or len(operations) != 1:
            self._send(head + RpcFailure("expecting one operation in <rpc>", tag="malformed-message").xml()
                       + "</rpc-reply>")
            return
        operation = operations[0]
        name = etree.QName(operation).localname
        faults = self.device.faults
        with self.device.lock:
            self.device.counters.commands += 1
            self.device.history.append(f"<{name}>")
            garbage, delay = faults.garbage.get(name), faults.delay
            drop = faults.drop_after_command is not None and re.search(faults.drop_after_command, name)
            if drop:
                faults.drop_after_command = None
        if delay:
            time.sleep(delay)
        if garbage is not None:
            self.chan.sendall(garbage.encode() + EOM)
            return
        handler = getattr(self, "_rpc_" + name.replace("-", "_"), None)
        try:
            if handler is None:
                raise RpcFailure(f"syntax error, expecting <rpc> operation, got <{name}>",
                                 tag="operation-not-supported", bad_element=name)
            body = handler(operation)
        except RpcFailure as failure:
            body = failure.xml()
        if drop:  # it ran; the client never learns it did
            self.session.reset()
            raise _Closed
        self._send(f"{head}{body}</rpc-reply>")
        if name == "close-session":
            raise _Closed

    def _rpc_close_session(self, op: Any) -> str:
        return "<ok/>"

    def _rpc_lock_configuration(self, op: Any) -> str:
        with self.device.lock:
            db = self.junos.db
            if db.exclusive is not None and db.exclusive is not self.junos:
                raise RpcFailure("configuration database locked by:\n  admin built-in (pid 4242) on since "
                                 "exclusive [edit]", tag="lock-denied")
            if db.exclusive is None:
                if not same(db.shared, db.active):
                    raise RpcFailure("configuration database modified", tag="lock-denied")
                self._leave_quietly()
                self.junos._configure(["configure", "exclusive"])
        return "<ok/>"

    def _rpc_lock(self, op: Any) -> str:
        return self._rpc_lock_configuration(op)

    def _rpc_unlock_configuration(self, op: Any) -> str:
        with self.device.lock:
            if self.junos.database != "exclusive":
                raise RpcFailure("configuration database is not locked", tag="operation-failed")
            self.junos._leave(discard=True)
        return "<ok/>"

    def _rpc_unlock(self, op: Any) -> str:
        return self._rpc_unlock_configuration(op)

    def _rpc_open_configuration(self, op: Any) -> str:
        if op.find("private") is None:
            raise RpcFailure("only <private/> configuration databases are modelled", bad_element="open-configuration")
        with self.device.lock:
            self._leave_quietly()
            answer = self.junos._configure(["configure", "private"])
        if answer.startswith("error:"):
            raise RpcFailure(answer.removeprefix("error: "))
        return ("<rpc-error><error-type>application</error-type><error-tag>operation-failed</error-tag>"
                "<error-severity>warning</error-severity><error-message>uncommitted changes will be discarded on "
                "exit</error-message></rpc-error>")  # as Junos answers it (napalm's junos driver expects it)

    def _rpc_close_configuration(self, op: Any) -> str:
        with self.device.lock:
            self._leave_quietly()
        return "<ok/>"

    def _rpc_discard_changes(self, op: Any) -> str:
        return self._load_rollback("0", wrap=None)

    def _rpc_load_configuration(self, op: Any) -> str:
        action, fmt = op.get("action", "merge"), op.get("format", "xml")
        if op.get("rollback") is not None:
            return self._load_rollback(op.get("rollback", ""), wrap="load-configuration-results")
        if action == "set":
            lines = (op.findtext("configuration-set") or "").splitlines()
        elif fmt == "text" and action in ("merge", "replace", "override"):  # replace: merge, honouring replace: tags
            text = op.findtext("configuration-text")
            if text is None:
                raise RpcFailure("missing <configuration-text>", bad_element="load-configuration",
                                 wrap="load-configuration-results")
            lines = text_to_set(text)
        else:
            raise RpcFailure(f"load-configuration action {action!r} format {fmt!r} is not modelled by this simulator "
                             "(set, or text with merge/replace/override)", bad_element="load-configuration",
                             wrap="load-configuration-results")
        with self.device.lock:
            self._enter()
            if action == "override":
                self.junos._replace_candidate({})
        warnings = [warning for line in lines if line.strip() and (warning := self._load_line(line.strip()))]
        return f"<load-configuration-results>{''.join(warnings)}<ok/></load-configuration-results>"

    def _load_line(self, line: str) -> str:
        """Run one loaded line: an ``rpc-error`` of severity warning to report, or "" (a refusal raises)."""
        faults = self.device.faults
        with self.device.lock:
            drop = faults.take_drop()
            pause = not drop and faults.take_pause()
        if pause:  # the line waits, unexecuted, until the test resumes it
            faults.paused.set()
            faults.resume.wait()
        if drop:
            self.session.reset()
            raise _Closed
        tokens = _tokens(line)
        words = [t for t, _ in tokens]
        with self.device.lock:
            self.device.counters.commands += 1
            self.device.counters.config_lines += 1
            self.device.history.append(line)
            pattern = faults.reject
            rejected = faults.take_reject(line)
            if rejected or words[0] not in ("set", "delete", "insert", "activate", "deactivate"):
                at = next((i for i, w in enumerate(words) if rejected and re.search(str(pattern), w)), 0)
                raise _load_error("syntax error", words, at)
            try:
                answer = self.junos._config(words)
            except JunosCliError as exc:
                raise _load_error(exc.message.rstrip("."), words, exc.index) from exc
        if answer.startswith("warning: "):  # e.g. a delete of what is not there: loaded, with a warning
            return ("<rpc-error><error-type>protocol</error-type><error-tag>operation-failed</error-tag>"
                    f"<error-severity>warning</error-severity><error-message>{escape(answer.removeprefix('warning: '))}"
                    "</error-message></rpc-error>")
        return ""

    def _load_rollback(self, number: str, *, wrap: str | None) -> str:
        with self.device.lock:
            self._enter()
            try:
                answer = self.junos._rollback(["rollback", number])
            except JunosCliError as exc:
                raise RpcFailure(f"invalid rollback number {number!r}", bad_element=number, wrap=wrap) from exc
        if answer.startswith("error:"):
            raise RpcFailure(answer.removeprefix("error: "), wrap=wrap)
        return f"<{wrap}><ok/></{wrap}>" if wrap else "<ok/>"

    def _rpc_get_configuration(self, op: Any) -> str:
        with self.device.lock:
            db = self.junos.db
            candidate = self.junos._candidate() if self.junos.config else db.shared
            if op.get("compare") == "rollback":
                number = op.get("rollback", "0")
                if not number.isdigit() or int(number) > len(db.history):
                    raise RpcFailure(f"rollback {number} does not exist", bad_element=number)
                base = db.active if number == "0" else db.history[int(number) - 1]
                diff = compare(base, candidate)
                return (f"<configuration-information><configuration-output>{escape(diff)}\n"
                        "</configuration-output></configuration-information>")
            database = op.get("database", "candidate")
            if database not in ("candidate", "committed"):
                raise RpcFailure(f"database {database!r} is not modelled", bad_element="database")
            tree = db.active if database == "committed" else candidate
            steps = self._filter_steps(op.find("configuration"))
            fmt = op.get("format", "xml")
            if fmt == "set":
                return f"<configuration-set>{escape(display_set(tree, steps))}\n</configuration-set>"
            if fmt == "text":
                node = walk(tree, steps)
                for step in reversed(steps):  # the filtered subtree inside its enclosing hierarchy
                    node = {step.element: node} if node is not None and step.element is not None else None
                text = "\n".join(braces(node)) if node is not None else ""
                return f"<configuration-text>{escape(text)}\n</configuration-text>"
        raise RpcFailure(f"get-configuration format {fmt!r} is not modelled by this simulator (text or set)",
                         bad_element="format")

    @staticmethod
    def _filter_steps(top: Any) -> list[Any]:
        """A subtree filter of nested empty containers (``<configuration><firewall/></configuration>``)."""
        words: list[str] = []
        node = top
        while node is not None:
            children = [c for c in node if isinstance(c.tag, str)]
            if len(children) > 1 or (node is not top and (node.text or "").strip()):
                raise RpcFailure("only filters of nested containers are modelled by this simulator",
                                 bad_element=etree.QName(node).localname)
            node = children[0] if children else None
            if node is not None:
                words.append(etree.QName(node).localname)
        try:
            return parse_path(words, partial=True)
        except JunosCliError as exc:
            raise RpcFailure("syntax error", bad_element=words[min(exc.index, len(words) - 1)]) from exc

    def _rpc_commit_configuration(self, op: Any) -> str:
        words = ["commit"]
        if op.find("check") is not None:
            words.append("check")
        if op.find("confirmed") is not None:
            timeout = (op.findtext("confirm-timeout") or "").strip()
            words += ["confirmed", *([timeout] if timeout else [])]
        with self.device.lock:
            refused, self.device.faults.refuse_commit = self.device.faults.refuse_commit, None
            if refused is not None:
                raise RpcFailure(refused, path="[edit]")
            self._enter()
            try:
                answer = self.junos._commit(words)
            except JunosCliError as exc:
                raise RpcFailure("syntax error", bad_element=words[min(exc.index, len(words) - 1)]) from exc
        errors = [line.strip() for line in answer.splitlines() if "error:" in line]
        if errors:
            raise RpcFailure("\n".join(e.removeprefix("error: ") for e in errors), path="[edit]")
        success = "<commit-check-success/>" if "check" in words else "<commit-success/>"
        return (f'<commit-results><routing-engine junos:style="normal"><name>re0</name>{success}'
                "</routing-engine></commit-results>")

    def _rpc_command(self, op: Any) -> str:
        if op.get("format", "xml") != "text":
            raise RpcFailure("only <command format=\"text\"> is modelled by this simulator", bad_element="command")
        line = (op.text or "").strip()
        with self.device.lock:
            console = JunosPersonality(self.device)
            try:
                output = console._exec([t for t, _ in _tokens(line)]) if line else ""
            except JunosCliError as exc:
                raise RpcFailure(exc.message.rstrip("."), bad_element=line) from exc
            finally:
                console.session_lost()
        return f"<output>\n{escape(output)}\n</output>"

    # -- configuration mode -------------------------------------------------------------------------------------

    def _enter(self) -> None:
        """Into configuration mode on the shared candidate unless this session already edits one (lock held)."""
        if not self.junos.config:
            self.junos._configure(["configure"])

    def _leave_quietly(self) -> None:
        if self.junos.config:
            self.junos._leave(discard=self.junos.database != "shared")


def _load_error(message: str, words: list[str], index: int) -> RpcFailure:
    """A refused loaded line as Junos reports it: the offending token, under the hierarchy leading to it."""
    index = min(max(index, 0), len(words) - 1)
    return RpcFailure(message, bad_element=words[index], path=f"[edit {' '.join(words[1:index])}]".replace(" ]", "]"),
                      wrap="load-configuration-results")


_TEXT_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};\[\]]|[^\s{};\[\]"]+')


def text_to_set(text: str) -> list[str]:
    """The ``set`` lines of curly-brace configuration text (``load merge`` input): blocks become path prefixes,
    ``[ a b ]`` lists one line per value; comments (``/* */``, ``#``) are skipped."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    path: list[list[str]] = []
    words: list[str] = []
    listed: list[str] | None = None
    lines: list[str] = []
    for token in _TEXT_TOKEN.findall(text):
        if token == "[":
            listed = []
        elif token == "]":
            if listed is None:
                raise RpcFailure("syntax error: unbalanced ]", bad_element="]", wrap="load-configuration-results")
            words.append("\0".join(listed))
            listed = None
        elif listed is not None:
            listed.append(token)
        elif token == "{":
            path.append(words)
            words = []
        elif token == ";":
            lines += _expand(path, words)
            words = []
        elif token == "}":
            if not path or words:
                raise RpcFailure("syntax error: unbalanced }", bad_element="}", wrap="load-configuration-results")
            block = path.pop()
            if not any(line.startswith(" ".join(["set", *(w for p in path for w in p), *block])) for line in lines):
                lines += _expand(path, block)  # an empty block (`term t1 { }`) still creates the element
        else:
            if token in ("replace:", "inactive:", "delete:", "protect:"):
                raise RpcFailure(f"{token} annotations are not modelled by this simulator", bad_element=token,
                                 wrap="load-configuration-results")
            words.append(token)
    if path or words or listed is not None:
        raise RpcFailure("syntax error: unterminated statement", bad_element=(words or ["}"])[-1],
                         wrap="load-configuration-results")
    return lines


def _expand(path: list[list[str]], words: list[str]) -> list[str]:
    prefix = ["set", *(w for p in path for w in p)]
    if words and "\0" in words[-1]:
        return [" ".join([*prefix, *words[:-1], value]) for value in words[-1].split("\0")]
    return [" ".join([*prefix, *words])]
