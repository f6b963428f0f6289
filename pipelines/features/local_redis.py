"""A throwaway redis-server on a free loopback port, for the Redis online store's tests and benchmark.

Uses Debian's redis-server, installing the package when it is missing (as root, e.g. in CI). No data is
saved to disk; the server stops when the context ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_path() -> str:
    exe = shutil.which("redis-server")
    for cmd in (
        ["apt-get", "install", "-y", "-q", "redis-server"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "redis-server"],
    ):
        if exe:
            break
        subprocess.run(
            cmd, capture_output=True, env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        )
        exe = shutil.which("redis-server")
    if not exe:
        raise RuntimeError(
            "redis-server is not installed and `apt-get install redis-server` failed "
            "(it needs root and Debian's package lists)"
        )
    return exe


@contextmanager
def local_redis(timeout_s: float = 20) -> Iterator[str]:
    """Yields Feast's connection string (127.0.0.1:<port>) of a fresh redis-server."""
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_path(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
