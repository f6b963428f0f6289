"""A throwaway redis-server on a free loopback port, for the Redis online store's tests and benchmark.

Uses Debian's redis-server, installing the package when it is missing (as root, e.g. in CI). No data is
saved to disk unless asked (LocalRedis(data_dir)); the server stops when the context ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


class LocalRedis:
    """A redis-server on a loopback port that can be stopped and started again on the same port (an outage).
    With `data_dir`, it saves its data there when stopped and loads it when started again."""

    def __init__(self, data_dir: Path | None = None, timeout_s: float = 20):
        self.port = free_port()
        self.data_dir = data_dir
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen | None = None

    @property
    def connection(self) -> str:
        """Feast's connection string."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        persistence = ["--save", "3600 1", "--dir", str(self.data_dir)] if self.data_dir else ["--save", ""]
        self._proc = subprocess.Popen(
            [redis_server_path(), "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "no", *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM: redis-server saves its data (with `data_dir`) and exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        self._proc = None


@contextmanager
def local_redis(timeout_s: float = 20) -> Iterator[str]:
    """Yields Feast's connection string (127.0.0.1:<port>) of a fresh redis-server that saves nothing."""
    server = LocalRedis(timeout_s=timeout_s)
    server.start()
    try:
        yield server.connection
    finally:
        server.stop()
