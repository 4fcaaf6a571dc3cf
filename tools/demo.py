"""`make demo`: the console server and the tutorial's client, talking on loopback.

Run from the checkout (it starts the top-level .tac files), so it is not part
of the installed package.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def waitForListening(
    port: int, server: subprocess.Popen[bytes], seconds: float = 20
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("demo: the console server exited before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"demo: the console server did not listen on port {port}")


def main() -> int:
    port = freePort()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPTUT_")}
    serverEnv = dict(env, SMTPTUT_LISTEN=f"tcp:{port}:interface=127.0.0.1")
    clientEnv = dict(env, SMTPTUT_TO="console@localhost", SMTPTUT_PORT=str(port))
    base = [TWISTD, "-n", "--pidfile=", "-l", "-"]

    print(
        f"$ SMTPTUT_LISTEN=tcp:{port}:interface=127.0.0.1 twistd -ny emailserver.tac &"
    )
    server = subprocess.Popen(
        [*base, "-y", "emailserver.tac"],
        cwd=TOP,
        env=serverEnv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        waitForListening(port, server)
        print(
            f"$ SMTPTUT_TO=console@localhost SMTPTUT_PORT={port} twistd -ny smtpclient.tac"
        )
        client = subprocess.run(
            [*base, "-y", "smtpclient.tac"],
            cwd=TOP,
            env=clientEnv,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for line in client.stdout.splitlines():
            if "[stdout#info]" in line:
                print("  " + line.split("[stdout#info] ", 1)[1])
        if client.returncode != 0:
            print(client.stderr, file=sys.stderr)
            return client.returncode
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            out, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
    printed = out.decode("utf-8", "replace")
    match = re.search(
        r"^New message received:\n.*?(?=^\S+ \[|\Z)", printed, re.M | re.S
    )
    print("\nThe console server printed:\n")
    print(match.group(0).rstrip() if match else printed)
    return 0 if match else 1


if __name__ == "__main__":
    raise SystemExit(main())
