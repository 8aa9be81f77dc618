"""The audit report: one self-contained HTML file for auditors and tickets — the segmentation matrix (who may
talk to whom, and what was observed) and what a run did, point by point (``microseg report`` writes it, the
API serves it per change request at ``/v1/change-requests/{id}/report``).

The file needs nothing but a browser: styles and the one small script are inline, no fonts, images or other
files are fetched.  The data behind it is :func:`report_data` (``--json`` prints it); :func:`render_html` only
presents it.

The matrix has a row per source group and a column per destination group (the policy's groups that hold
addresses).  A cell lists, in evaluation order, the policy rules whose sources share an address with the row's
group and whose destinations share one with the column's — what could decide traffic between them — and is
marked *allow* when they all allow, *deny* when they all deny, *monitor* when they are all deny rules being
watched (``mode: monitor``: they log and let traffic through), *mixed* otherwise (which decides depends on the
addresses and services), and *default* when none applies (the policy's default action decides).  With
observed flows (the flow store of ``microseg collect``), a cell also counts the conversations whose client is
in the row's group and server in the column's.
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.model.rules import Action

MAX_GROUPS = 60  # a matrix wider than this is no longer read by a person: the rest is listed, not drawn


def report_data(engine: Any, run_id: str | None, conversations: Sequence[Any] | None, *,
                change: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything the report shows, JSON-ready: the matrix over the engine's policy, and the run (``run_id``;
    None: the latest).  For a change request (``change``: its record as a dict, plus ``basis``, a sentence on
    which policy the matrix shows), its ticket, requester, approver and rules, and only its own run (None: no
    run yet)."""
    from orchestrator.packetspace.flowset import holds  # noqa: PLC0415

    prepared = engine.prepared()
    compilation = engine.compilation()
    groups = {name: g.addresses for name, g in sorted(compilation.groups.items()) if g.addresses}
    names = list(groups)[:MAX_GROUPS]
    default = prepared.policy.defaults.action.value
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for src in names:
        row: dict[str, dict[str, Any]] = {}
        for dst in names:
            rules = [{"rule": pr.rule.name, "action": _action(pr), "services": list(pr.rule.services)}
                     for pr in prepared.rules
                     if pr.src.addresses.overlaps(groups[src]) and pr.dst.addresses.overlaps(groups[dst])]
            actions = {r["action"] for r in rules}
            verdict = "default" if not actions else "mixed" if len(actions) > 1 else actions.pop()
            row[dst] = {"verdict": verdict, "rules": rules, "observed": 0}
        cells[src] = row
    if conversations:
        for c in conversations:
            client, server = ipaddress.ip_address(c.client), ipaddress.ip_address(c.server)
            sources = [n for n in names if holds(groups[n], client.version, int(client))]
            targets = [n for n in names if holds(groups[n], server.version, int(server))]
            for src in sources:
                for dst in targets:
                    cells[src][dst]["observed"] += 1
    data: dict[str, Any] = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "policy_digest": engine.policy_digest(),
        "default_action": default,
        "groups": names,
        "groups_not_drawn": list(groups)[MAX_GROUPS:],
        "flows": None if conversations is None else len(conversations),
        "matrix": cells,
        "run": None,
        "change": _change(change) if change is not None else None,
    }
    runs = engine.store.runs(limit=1) if run_id is None and change is None else None
    chosen = run_id or (runs[0].id if runs else None)
    if chosen is not None:
        record = engine.store.run(chosen)
        plans = engine.store.plans(record.id)
        data["run"] = {
            **record.to_dict(),
            "points": {point: _point(plans.get(point), result.to_dict())
                       for point, result in sorted(record.results.items())},
        }
    return data


def _change(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the report shows of a change request: who asked, who approved, which rules it adds and removes."""
    spec = record.get("change") or {}
    return {"id": record.get("id"), "ticket": record.get("ticket"), "status": record.get("status"),
            "requester": record.get("requester"), "submitted_by": record.get("submitted_by"),
            "approver": record.get("approver"), "approved_at": record.get("approved_at"),
            "applied_at": record.get("applied_at"), "basis": record.get("basis", ""),
            "add": [str(r.get("name")) for r in spec.get("add") or () if isinstance(r, Mapping)],
            "remove": [str(r) for r in spec.get("remove") or ()]}


def _action(prepared_rule: Any) -> str:
    """``allow``, ``deny``, or ``monitor`` for a deny rule being watched (it logs and lets through)."""
    if not prepared_rule.allows and prepared_rule.action is Action.PERMIT:
        return "monitor"
    return str(prepared_rule.rule.action.value)


def _point(plan: Mapping[str, Any] | None, result: Mapping[str, Any]) -> dict[str, Any]:
    """What the report shows of one point of the run: its end state, the change and what guarded it."""
    plan = plan or {}
    change = plan.get("change") or {}
    return {
        "state": result.get("state"),
        "detail": result.get("detail") or {},
        "summary": plan.get("summary"),
        "driver": plan.get("driver"),
        "commands": list(change.get("commands") or []),
        "guards": list(plan.get("guards") or []),
        "unmanaged": list(plan.get("unmanaged") or []),
    }


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d1d1f}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table.matrix{border-collapse:collapse}
.matrix th,.matrix td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;font-size:12px}
.matrix th.col{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap}
td.allow{background:#d9f2d9}td.deny{background:#f7d4d4}td.mixed{background:#fbf0c9}td.monitor{background:#dce8fa}
td.default{background:#f1f1f1;color:#777}td b{display:block}
td .obs{display:block;font-weight:bold;color:#0645ad}
table.points{border-collapse:collapse;width:100%}.points td,.points th{border-bottom:1px solid #ddd;padding:4px}
pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
.state-new,.state-unchanged,.state-in_sync{color:#176f2c}.state-failed,.state-unknown{color:#b00020}
"""

# Runs in the reader's browser: counts the cells by verdict into the summary line (nothing is fetched).
_SCRIPT = """
(function(){
  var cells=document.querySelectorAll('table.matrix td[data-verdict]'), n={allow:0,deny:0,monitor:0,mixed:0,default:0},
      seen=0;
  cells.forEach(function(c){n[c.dataset.verdict]++; if(+c.dataset.observed>0){seen++;}});
  document.getElementById('summary').textContent = 'Matrix: ' + cells.length + ' group pairs, ' + n.allow +
    ' allowed, ' + n.deny + ' denied, ' + n.monitor + ' monitored, ' + n.mixed + ' mixed, ' + n['default'] +
    ' left to the default, ' +
    seen + ' with observed flows.';
})();
"""


def _change_html(change: Mapping[str, Any] | None) -> list[str]:
    if change is None:
        return []
    e = html.escape
    approval = (f"approved by <b>{e(str(change['approver']))}</b> at {e(str(change['approved_at']))}"
                if change.get("approver") else "not approved")
    return [f"<h2>Change request {e(str(change['id']))}</h2>",
            f'<p id="change">ticket <b>{e(str(change["ticket"]))}</b> · status <b>{e(str(change["status"]))}</b>'
            f" · requested by {e(str(change['requester']))} · submitted by {e(str(change['submitted_by']))}"
            f" · {approval}" + (f" · applied at {e(str(change['applied_at']))}" if change.get("applied_at") else "")
            + "</p>",
            f"<p>Rules added: {e(', '.join(change['add']) or 'none')} · removed: "
            f"{e(', '.join(change['remove']) or 'none')}</p>",
            *([f"<p>{e(change['basis'])}</p>"] if change.get("basis") else [])]


SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
"""The CSP source of the page's one script (``script-src 'sha256-…'``): a server allows that script and no other."""


def render_html(data: Mapping[str, Any]) -> str:
    """The report as one HTML document with everything inline."""
    e = html.escape
    names: list[str] = data["groups"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>microseg report</title>", f"<style>{_STYLE}</style></head><body>",
           "<h1>microseg segmentation report</h1>",
           f"<p>Generated {e(data['generated'])} · policy digest <code>{e(str(data['policy_digest'])[:16])}</code>"
           f" · default action <b>{e(data['default_action'])}</b>"
           + (f" · {data['flows']:,} observed conversations" if data["flows"] is not None else
              " · no flow data (cells show the policy only)") + "</p>",
           *_change_html(data.get("change")),
           '<p id="summary">Matrix summary needs a browser with scripts enabled.</p>',
           "<h2>Segmentation matrix</h2>",
           "<p>Rows: source group; columns: destination group. A cell lists the rules that can decide traffic "
           "between them, in evaluation order: <i>allow</i> when all allow, <i>deny</i> when all deny, "
           "<i>monitor</i> when all are deny rules being watched (they log and let through), <i>mixed</i> "
           "otherwise, <i>default</i> when none applies.</p>",
           '<table class="matrix"><tr><th></th>' + "".join(f'<th class="col">{e(n)}</th>' for n in names) + "</tr>"]
    for src in names:
        row = [f"<tr><th>{e(src)}</th>"]
        for dst in names:
            cell = data["matrix"][src][dst]
            text = "; ".join(f"{r['action']} {', '.join(r['services'])} ({r['rule']})" for r in cell["rules"][:3])
            if len(cell["rules"]) > 3:
                text += f"; +{len(cell['rules']) - 3} more"
            observed = f'<span class="obs">observed {cell["observed"]}</span>' if cell["observed"] else ""
            title = e(f"{src} → {dst}: {cell['verdict']}")
            row.append(f'<td class="{cell["verdict"]}" data-verdict="{cell["verdict"]}" '
                       f'data-observed="{cell["observed"]}" title="{title}"><b>{e(cell["verdict"])}</b>'
                       f"{e(text)}{observed}</td>")
        out.append("".join(row) + "</tr>")
    out.append("</table>")
    if data["groups_not_drawn"]:
        out.append(f"<p>Not drawn ({len(data['groups_not_drawn'])} more groups): "
                   f"{e(', '.join(data['groups_not_drawn']))}</p>")
    run = data["run"]
    if run is None:
        out.append("<h2>Run</h2><p>No run recorded in the store yet.</p>")
    else:
        out += [f"<h2>Run {e(run['id'])}</h2>",
                f"<p>{e(run['kind'])} · status <b>{e(run['status'])}</b> · by {e(run['actor'])}"
                + (f" · ticket {e(run['ticket'])}" if run.get("ticket") else "")
                + f" · started {e(str(run['started_at']))} · finished {e(str(run.get('finished_at')))}</p>",
                '<table class="points"><tr><th>point</th><th>end state</th><th>change</th><th>guards</th></tr>']
        for point, p in run["points"].items():
            guards = "; ".join(str(g.get("message", g)) for g in p["guards"]) or "none"
            out.append(f'<tr><td>{e(point)}</td><td class="state-{e(str(p["state"]))}">{e(str(p["state"]))}</td>'
                       f"<td>{e(str(p['summary'] or '-'))}</td><td>{e(guards)}</td></tr>")
        out.append("</table>")
        for point, p in run["points"].items():
            if p["commands"]:
                out += [f"<h3>{e(point)}: native change ({e(str(p['driver']))})</h3>",
                        f"<pre>{e(chr(10).join(p['commands']))}</pre>"]
            if p["detail"]:
                out.append(f"<details><summary>{e(point)}: recorded result</summary>"
                           f"<pre>{e(json.dumps(p['detail'], indent=2, sort_keys=True, default=str))}</pre>"
                           "</details>")
        events = run.get("events") or []
        out += ["<h3>Audit trail</h3>", "<ul>"]
        out += [f"<li>{e(str(ev['at']))} {e(ev['event'])} by {e(ev['actor'])}"
                + (f" ({e(ev['point'])})" if ev.get("point") else "") + "</li>" for ev in events]
        out.append("</ul>")
    out += [f"<script>{_SCRIPT}</script>", "</body></html>"]
    return "\n".join(out) + "\n"
