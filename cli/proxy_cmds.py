"""`hybridnas storage-proxy`: Optuna's gRPC storage proxy in front of the study database.

Workers then use ``--storage grpc://HOST:PORT``: one process holds the database connections and
a trial cache for all of them, instead of every worker polling PostgreSQL on each trial. Bound
beyond loopback it lets in only clients with its token ($HYBRIDNAS_PROXY_TOKEN, else one
generated and shown once), since the proxy protocol itself lets anyone delete a study.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from hybridnas.cli._console import make_console

console = make_console(stderr=True)


def storage_proxy_cmd(
    storage: Annotated[
        str,
        typer.Option("--storage", help="Database URL to serve (sqlite:///... or postgresql://...)."),
    ],
    host: Annotated[str, typer.Option(
        "--host", help="Interface to bind; beyond loopback clients need the token ($HYBRIDNAS_PROXY_TOKEN, else "
        "one generated and shown once), sent in plain text (no TLS).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 13000,
) -> None:
    """Serve Optuna's gRPC storage proxy; workers connect with --storage grpc://HOST:PORT."""
    # Imported here, not at the top: it pulls in Optuna, which `hybridnas --help` need not load.
    from hybridnas.storage import PROXY_TOKEN_ENV, serve_proxy, server_token

    token, generated = server_token(PROXY_TOKEN_ENV, host)

    def announce(masked_url: str) -> None:
        console.print(Text.assemble(f"storage proxy for {masked_url} at ", (f"grpc://{host}:{port}", "bold")),
                      soft_wrap=True)
        if generated:
            console.print(f"clients need this token (shown once; set ${PROXY_TOKEN_ENV} to choose it): {token}",
                          soft_wrap=True, highlight=False)
        elif token is not None:
            console.print(f"clients need the token in ${PROXY_TOKEN_ENV}", soft_wrap=True)
        console.print("Ctrl-C stops it")

    serve_proxy(storage, host, port, token=token, on_ready=announce)


def register(app: typer.Typer) -> None:
    app.command("storage-proxy")(storage_proxy_cmd)
