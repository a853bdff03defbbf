"""`aisle serve`: the HTTP API on uvicorn."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from aisle.cli.context import console, guarded, settings
from aisle.config import Settings


def banner(config: Settings, host: str, port: int, open_mode: bool) -> None:
    """Where the service listens, and a loud word when it runs without keys."""
    base = f"http://{host}:{port}"
    console.print(f"aisle serving on [bold]{base}[/bold]  (API docs: {base}/docs)")
    if open_mode:
        console.print(
            "[bold yellow]WARNING: no API key is configured. aisle runs in DEVELOPMENT MODE: "
            "anyone who can reach this port may ingest, read and erase. It binds to loopback "
            "only. Set [serve] api_keys or AISLE_API_KEYS before exposing it.[/bold yellow]"
        )


@guarded
def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: serve.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serve.port).")] = None,
    access_log: Annotated[bool, typer.Option(help="Log each request (route, status).")] = True,
) -> None:
    """Serve search, recommendations, ingest and erasure over HTTP."""
    import uvicorn  # noqa: PLC0415 (heavy)

    from aisle.serving.app import create_app  # noqa: PLC0415
    from aisle.serving.security import Keys, check_bind  # noqa: PLC0415
    from aisle.serving.service import Service  # noqa: PLC0415

    config = settings()
    host = host or config.serve.host
    port = config.serve.port if port is None else port
    keys = Keys(config.serve)
    check_bind(host, keys)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # a level, not the disabled flag: uvicorn's logging setup clears that flag
    logging.getLogger("aisle.access").setLevel(logging.INFO if access_log else logging.WARNING)
    with console.status("loading models and the search index"):
        service = Service(config)
    banner(config, host, port, keys.open)
    # uvicorn's own access log prints raw paths, which can hold customer ids: ours does not
    uvicorn.run(create_app(service), host=host, port=port, access_log=False,
                log_level="warning", timeout_graceful_shutdown=10)  # fmt: skip
