"""`hybridnas storage-proxy`: Optuna's gRPC storage proxy in front of the study database.

Workers then use ``--storage grpc://HOST:PORT``: one process holds the database connections and
a trial cache for all of them, instead of every worker polling PostgreSQL on each trial.
"""

from __future__ import annotations

import socket
import warnings
from typing import Annotated

import optuna
import typer
from optuna.exceptions import ExperimentalWarning
from rich.console import Console

from hybridnas.cli.errors import UserError
from hybridnas.storage import mask_url, open_storage, resolve_url

console = Console(stderr=True)


def _check_port_free(host: str, port: int) -> None:
    """gRPC only logs a failed bind and then serves nothing, so test the port first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as err:
            raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); pick another with --port") from None


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
    url = resolve_url(storage)
    if url.startswith("grpc://"):
        raise UserError("--storage must be a database URL, not another proxy")
    _check_port_free(host, port)
    # Optuna asks for get_storage(): it wraps the RDBStorage in its trial cache, without which
    # every GetTrials call of every worker reads the whole study from the database. Proxy
    # clients record no heartbeats, so the server's storage does not need them either.
    cached = optuna.storages.get_storage(open_storage(url, heartbeat_interval=None))
    console.print(f"storage proxy for {mask_url(url)} at [bold]grpc://{host}:{port}[/bold]; Ctrl-C stops it",
                  soft_wrap=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            optuna.storages.run_grpc_proxy_server(cached, host=host, port=port)
        except KeyboardInterrupt:
            pass


def register(app: typer.Typer) -> None:
    app.command("storage-proxy")(storage_proxy_cmd)
