"""`hybridnas storage-proxy`: Optuna's gRPC storage proxy in front of the study database.

Workers then use ``--storage grpc://HOST:PORT``: one process holds the database connections and
a trial cache for all of them, instead of every worker polling PostgreSQL on each trial.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def storage_proxy_cmd(
    storage: Annotated[
        str,
        typer.Option("--storage", help="Database URL to serve (sqlite:///... or postgresql://...)."),
    ],
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes it (no TLS, no auth).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 13000,
) -> None:
    """Serve Optuna's gRPC storage proxy; workers connect with --storage grpc://HOST:PORT."""
    # Imported here, not at the top: it pulls in Optuna, which `hybridnas --help` need not load.
    from hybridnas.storage import serve_proxy

    def announce(masked_url: str) -> None:
        console.print(f"storage proxy for {masked_url} at [bold]grpc://{host}:{port}[/bold]; Ctrl-C stops it",
                      soft_wrap=True)

    serve_proxy(storage, host, port, on_ready=announce)


def register(app: typer.Typer) -> None:
    app.command("storage-proxy")(storage_proxy_cmd)
