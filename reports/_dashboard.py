"""optuna-dashboard over a study storage, with the trials' artifacts served beside it."""

from __future__ import annotations

import errno

from hybridnas.common import UsageError


def serve_dashboard(storage_url: str | None, host: str, port: int, artifacts: str | None = None) -> None:
    """Serve until interrupted; a port already in use is a one-line error, not a traceback.

    ``artifacts`` is the location the workers wrote to (see
    :func:`~hybridnas.storage.artifacts_location`), so the dashboard shows the same files.
    """
    import optuna_dashboard

    from hybridnas.storage import artifact_store, open_storage

    storage = open_storage(storage_url, heartbeat_interval=None)
    store = artifact_store(storage_url, artifacts)
    try:
        optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use; choose another port") from None
        raise
