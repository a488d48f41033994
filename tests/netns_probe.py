"""Run inside a private network namespace by tests/integration/test_api_access.py.

The namespace has only its own loopback device, carrying 127.0.0.1 and ``REMOTE`` (a
documentation address that is not loopback), so nothing here can reach another machine. This
starts ``tokenmeter serve`` as an operator would (listening on 0.0.0.0, uvicorn's
``FORWARDED_ALLOW_IPS`` as permissive as it goes), sends each attempt from argv[1] (a JSON
list of {"name", "from": "remote" | "loopback", "headers"}) to ``GET /api/v1/people`` and prints
{name: status} as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REMOTE = "198.51.100.7"
PORT = 8080


def main() -> int:
    attempts = json.loads(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        server = _serve(Path(tmp))
        try:
            _wait_ready(server)
            print(json.dumps({a["name"]: _send(a) for a in attempts}))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


def _serve(tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TOKENMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/tm.db",
        "TOKENMETER_SPOOL_DIR": str(tmp / "spool"),
        "FORWARDED_ALLOW_IPS": "*",
    }
    command = [sys.executable, "-m", "proxy.cli", "serve", "--host", "0.0.0.0", "--port", str(PORT)]  # noqa: S104 - the namespace's own addresses
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)  # noqa: S603


def _wait_ready(server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"tokenmeter serve exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("tokenmeter serve did not become ready")


def _send(attempt: dict[str, object]) -> int:
    remote = attempt["from"] == "remote"
    host = REMOTE if remote else "127.0.0.1"
    transport = httpx.HTTPTransport(local_address=REMOTE if remote else None)
    with httpx.Client(transport=transport) as client:
        headers = attempt["headers"]
        assert isinstance(headers, dict)
        response = client.get(f"http://{host}:{PORT}/api/v1/people", headers=headers)
    return response.status_code


if __name__ == "__main__":
    sys.exit(main())
