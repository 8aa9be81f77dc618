"""Real TCP probes from inside a lab namespace: ``python -m orchestrator.lab.probe [--timeout S] ADDRESS:PORT …``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

BANNER_WAIT = 0.5
"""How long a connected probe waits for the first line the server sends (the lab listener names its host)."""


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one TCP connect: ``ok`` when it connected; ``detail`` is connected/refused/timed out/error."""

    ok: bool
    detail: str
    src: str = ""
    dst: str = ""
    port: int = 0
    banner: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _failure(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"unreachable ({exc.strerror})"
    return f"error: {exc.strerror or exc}"


async def _probe(address: str, port: int, timeout: float) -> dict[str, Any]:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except TimeoutError:
        return {"ok": False, "detail": "timed out"}
    except OSError as exc:
        return {"ok": False, "detail": _failure(exc)}
    banner = b""
    with contextlib.suppress(TimeoutError, OSError):
        banner = await asyncio.wait_for(reader.readline(), min(timeout, BANNER_WAIT))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return {"ok": True, "detail": "connected", "banner": banner.decode(errors="replace").strip()}


async def probe_all(targets: list[tuple[str, int]], timeout: float) -> list[dict[str, Any]]:
    """Probe every ``(address, port)`` concurrently; results in the same order."""
    return list(await asyncio.gather(*(_probe(a, p, timeout) for a, p in targets)))


def _target(text: str) -> tuple[str, int]:
    address, _, port = text.rpartition(":")
    return address.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.lab.probe", description=__doc__)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per connect (default 1)")
    parser.add_argument("targets", nargs="*", type=_target, metavar="ADDRESS:PORT")
    args = parser.parse_args(argv)
    json.dump(asyncio.run(probe_all(args.targets, args.timeout)), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
