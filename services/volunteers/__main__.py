"""`python -m services.volunteers`: the entry point that make run and compose both use."""

from shared.http import serve
from shared.logging import setup_logging
from shared.telemetry import setup_telemetry

from .config import Settings
from .main import create_app


def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level)
    setup_telemetry(settings.service_name, traces_file=settings.traces_file)
    serve(create_app(settings), host=settings.http_host, port=settings.port,
          log_level=settings.log_level)


if __name__ == "__main__":
    main()
