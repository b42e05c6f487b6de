"""`python -m services.node`: run the node service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys

from services.common.logs import setup_logging
from services.common.metrics import serve_metrics
from services.common.server import StartupError, run_until_signalled
from services.common.settings import load_settings
from services.node.app import SERVICE_NAMES, start_node_service
from services.node.settings import NodeSettings


async def main() -> None:
    settings = load_settings(NodeSettings)
    setup_logging(settings.log_level, settings.log_format)
    if settings.metrics_listen:
        serve_metrics(settings.metrics_listen)
    service = await start_node_service(settings)

    async def stop_loops() -> None:
        await service.stop(0)

    await run_until_signalled(
        service.server,
        service.health,
        SERVICE_NAMES,
        settings.shutdown_grace,
        on_stop=stop_loops,
        on_drain=service.drain,
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"berth-node: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
