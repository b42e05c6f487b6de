"""A TCP proxy in its own process, frozen with SIGSTOP: a database server that hangs.

A stopped proxy holds every connection open and answers nothing, and the kernel still
queues new connections on its socket — what clients of a frozen server see — while the
machine's shared database server keeps running for everyone else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

from sqlalchemy.engine import make_url

from tests import processes
from tests.ports import free_port

_PROXY = r"""
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def main(host, port, listen_port):
    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


class FrozenProxy:
    """Forwards 127.0.0.1:<port> to the database of `url`; `freeze()` / `thaw()` it, or
    `close()` it (a database that is down) and start another on the same `port`. The
    port is below the ephemeral range (tests.ports), so no client connection made while
    the proxy is down can take it before the next one binds it."""

    def __init__(self, url: str, port: int = 0) -> None:
        self._target = make_url(url)
        port = port or free_port()
        default_port = 3306 if self._target.get_backend_name() == "mysql" else 5432
        # A file, not a pipe: nothing reads the proxy's stderr while it runs.
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - read only if the start fails
        self._proc = processes.spawn(
            [
                sys.executable,
                "-c",
                _PROXY,
                self._target.host or "127.0.0.1",
                str(self._target.port or default_port),
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip():
            processes.kill(self._proc)
            errors.seek(0)
            raise AssertionError(f"the proxy for port {port} did not start: {errors.read()!r}")
        errors.close()
        self.port = int(line)
        self.frozen = False

    @property
    def url(self) -> str:
        """The database URL, through the proxy."""
        proxied = self._target.set(host="127.0.0.1", port=self.port)
        return proxied.render_as_string(hide_password=False)

    def freeze(self) -> None:
        os.kill(self._proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self._proc.pid, signal.SIGCONT)
        self.frozen = False

    def close(self) -> None:
        if self.frozen:
            self.thaw()
        processes.kill(self._proc)
