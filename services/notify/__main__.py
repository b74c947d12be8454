"""`python -m services.notify`: the entry point that make run and compose both use."""

import uvicorn

from shared.logging import setup_logging
from shared.telemetry import setup_telemetry

from .config import Settings
from .main import create_app


def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level)
    setup_telemetry(settings.service_name, traces_file=settings.traces_file)
    # shared.http.serve's options, plus a transport cap on WebSocket frames: frames between
    # MAX_FRAME_BYTES and WS_MAX_SIZE get an error frame; larger ones close the socket.
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        ws_max_size=settings.ws_max_size,
    )


if __name__ == "__main__":
    main()
