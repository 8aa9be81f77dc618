"""``python -m simulators.netdev fleet SPEC.json``: serve a fleet of simulated devices until SIGTERM/SIGINT.

Prints ``{name: ssh_port}`` as one JSON line once every device listens; when entries ask for eAPI (``eapi_ca``:
where to write the CA that signs its certificate, EOS only), a second line ``{name: eapi_port}`` follows."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from simulators.netdev.eapi import serving_eapi
from simulators.netdev.server import DeviceSimulator
from simulators.netdev.session import use_host_key


def build(entry: dict[str, Any]) -> DeviceSimulator:
    """One device from a fleet spec entry."""
    return DeviceSimulator(
        entry["personality"],
        entry.get("hostname") or entry["name"],
        username=entry.get("username", "admin"),
        password=entry.get("password", "admin"),
        port=int(entry.get("port", 0)),
        host=entry.get("host", "127.0.0.1"),
        authorized_keys=entry.get("authorized_keys", ()),
        minute_seconds=float(entry.get("minute_seconds", 60.0)),
        boot_config=entry.get("boot_config", ()),
        interfaces=entry.get("interfaces", ()),
    )


def fleet(spec_path: str, host_key: str | None = None) -> int:
    # clients that drop a connection mid-handshake (a host-key probe, a refused key) are not this process's errors
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    if host_key:
        use_host_key(host_key)
    spec = json.loads(Path(spec_path).read_text())
    if not isinstance(spec, list):
        raise SystemExit("fleet spec: a JSON list of devices expected")
    names = [entry["name"] for entry in spec]
    if len(set(names)) != len(names):
        raise SystemExit("fleet spec: device names must be unique")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    devices = [build(entry) for entry in spec]
    started: list[DeviceSimulator] = []
    try:
        with ExitStack() as stack:
            for device in devices:
                started.append(device.start())
            eapi = {entry["name"]: stack.enter_context(serving_eapi(device, Path(entry["eapi_ca"])))
                    for entry, device in zip(spec, devices, strict=True) if entry.get("eapi_ca")}
            print(json.dumps({name: device.port for name, device in zip(names, devices, strict=True)}), flush=True)
            if eapi:
                print(json.dumps(eapi), flush=True)
            while not done.wait(0.5):
                pass
    finally:
        for device in started:
            device.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.netdev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("fleet", help="start the devices listed in SPEC (JSON list) and print {name: port}")
    run.add_argument("spec")
    run.add_argument("--host-key", metavar="FILE", help="the devices' SSH host key (OpenSSH private key); "
                                                         "default: a new one per start")
    args = parser.parse_args(argv)
    return fleet(args.spec, args.host_key)


if __name__ == "__main__":
    sys.exit(main())
