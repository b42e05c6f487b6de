"""`python -m services.<name>`: the same life for every Berth process.

Settings (a bad one stops the process, exit 2), logging, metrics, start, serve until
SIGTERM/SIGINT (or until the process asks itself to stop), then drain and stop (see
server.run_until_signalled).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.common.logs import setup_logging
from services.common.metrics import serve_metrics
from services.common.reporter import ServiceReporter
from services.common.server import Running, StartupError, run_until_signalled
from services.common.settings import CommonSettings, ServerSettings, load_settings
from services.common.workers import STARTUP_FAILED, Supervisor, Worker, reserve_port, this_worker


class Serving:
    """Mixed into each process's running-state dataclass: where it is reached on this
    machine, and stopping its own heartbeats (safe to call twice)."""

    port: int
    reporter: ServiceReporter | None
    # Set by a process that stops itself; its main loop then stops as on SIGTERM.
    stop_requested: asyncio.Event | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop_reporting(self) -> None:
        if self.reporter is not None:
            await self.reporter.stop()
            self.reporter = None


S = TypeVar("S", bound=CommonSettings)


def run(
    settings_class: type[S],
    start: Callable[[S], Awaitable[Running]],
    service_names: list[str],
    *,
    after_start: Callable[[], None] | None = None,
) -> None:
    """Run one process until signalled; never returns a traceback for a bad start. With
    `workers` above 1 in its settings (BERTH_WORKERS), this process supervises that many
    copies of itself serving one port (see workers.py)."""

    async def main(settings: S, worker: Worker | None) -> None:
        if settings.metrics_listen:
            # Each worker its own metrics port: the configured one plus its index.
            listen = worker.own_port(settings.metrics_listen) if worker else settings.metrics_listen
            serve_metrics(listen, has_credentials=settings.auth_file is not None)
        process = await start(settings)
        if after_start is not None:
            after_start()

        await run_until_signalled(process, service_names, settings.shutdown_grace)

    settings = load_settings(settings_class)
    setup_logging(settings.log_level, settings.log_format)
    worker = this_worker()
    try:
        workers = settings.workers if isinstance(settings, ServerSettings) else 1
        if workers > 1 and worker is None:
            holder, address = reserve_port(settings.listen_address, "BERTH_LISTEN")
            with holder:
                sys.exit(Supervisor(settings_class.binary, workers, address).run())
        asyncio.run(main(settings, worker))
    except StartupError as exc:
        print(f"{settings_class.binary}: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILED)
    except KeyboardInterrupt:
        pass
