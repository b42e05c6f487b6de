"""`python -m services.compute`: run the compute agent until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys

from services.common.logs import setup_logging
from services.common.metrics import serve_metrics
from services.common.server import StartupError, run_until_signalled
from services.common.settings import load_settings
from services.compute.app import BINARY, SERVICE_NAMES, start_agent
from services.compute.settings import ComputeSettings


async def main() -> None:
    settings = load_settings(ComputeSettings)
    setup_logging(settings.log_level, settings.log_format)
    if settings.metrics_listen:
        serve_metrics(settings.metrics_listen)
    agent = await start_agent(settings)

    async def stop_loops() -> None:
        await agent.stop(0)

    await run_until_signalled(
        agent.server,
        agent.health,
        SERVICE_NAMES,
        settings.shutdown_grace,
        on_stop=stop_loops,
        on_drain=agent.drain,
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"{BINARY}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
