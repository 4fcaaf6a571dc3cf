"""`make demo`: the console server and the tutorial's client, talking on loopback.

Run from the checkout (it starts the top-level .tac files), so it is not part
of the installed package.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

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


def inboxListing(url: str, seconds: float = 10) -> dict[str, object]:
    """
    The inbox's first page of messages, once the demo message is in it.
    """
    deadline = time.monotonic() + seconds
    while True:
        with urllib.request.urlopen(url + "api/v1/messages", timeout=5) as r:
            listing: dict[str, object] = json.load(r)
        if listing.get("total") or time.monotonic() > deadline:
            return listing
        time.sleep(0.1)


def main() -> int:
    port = freePort()
    httpPort = freePort()
    inbox = f"http://127.0.0.1:{httpPort}/"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPTUT_")}
    serverEnv = dict(
        env,
        SMTPTUT_LISTEN=f"tcp:{port}:interface=127.0.0.1",
        SMTPTUT_HTTP=f"tcp:{httpPort}:interface=127.0.0.1",
    )
    clientEnv = dict(env, SMTPTUT_TO="console@localhost", SMTPTUT_PORT=str(port))
    base = [TWISTD, "-n", "--pidfile=", "-l", "-"]

    print(
        f"$ SMTPTUT_LISTEN=tcp:{port}:interface=127.0.0.1"
        f" SMTPTUT_HTTP=tcp:{httpPort}:interface=127.0.0.1 twistd -ny emailserver.tac &"
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
        waitForListening(httpPort, server)
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
        listing = inboxListing(inbox)
        print(f"\n$ curl {inbox}api/v1/messages   # the inbox, Mailpit's API")
        messages = listing.get("messages")
        for m in messages if isinstance(messages, list) else []:
            sender = m["From"]["Address"]
            print(
                f"  {m['Created']}  from {sender}: {m['Subject']!r} ({m['Size']} octets)"
            )
        print(f"  (the web inbox is at {inbox} while the server runs)")
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
