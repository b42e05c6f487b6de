"""`python -m services.api` (`berth-api`): serve the Compute API until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

import uvicorn

from services.api.app import create_app
from services.api.settings import ApiSettings
from services.common.listeners import StartupError, require_credentials, require_free
from services.common.logs import setup_logging
from services.common.metrics import serve_metrics
from services.common.settings import load_settings, split_host_port


def main() -> None:
    settings = load_settings(ApiSettings)
    setup_logging(settings.log_level, settings.log_format)
    address = settings.listen_address
    try:
        require_credentials(
            address, settings.auth_file is not None, "the Compute API", "BERTH_LISTEN"
        )
        require_free(address, "BERTH_LISTEN")
        if settings.metrics_listen:
            serve_metrics(settings.metrics_listen, has_credentials=settings.auth_file is not None)
    except StartupError as exc:
        print(f"{ApiSettings.binary}: {exc}", file=sys.stderr)
        sys.exit(2)
    host, port = split_host_port(address)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,  # Berth's own logging, set up above
        access_log=False,  # the app logs each request with its id and version
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
        server_header=False,
    )


if __name__ == "__main__":
    main()
