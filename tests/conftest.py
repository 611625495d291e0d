"""Shared fixtures and the test tiers; shared paths and helpers are in helpers.py.

Tiers: every test that starts real services or processes (Ray, the PostgreSQL server, the
fault tests' workers, a dashboard or proxy server, the CLI as a new process) is marked
`integration`, here or by hand, as is a test that runs a real search or trains a real model
for several seconds; the rest are marked `fast`, the inner-loop tier (`pytest -m fast`, under
two minutes on 2 cores). The default run (and CI) runs both; `slow` and `bench` tests only
when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from helpers import ARCHIVE, POSTGRES_URL, TEST_CACHE

# Fixtures that bring up a real service: a test using one is an integration test.
_SERVICE_FIXTURES = {"ray_cluster", "postgres_url", "pg_study"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVICE_FIXTURES & set(item.fixturenames) or "reliability" in item.path.parts:
            item.add_marker(pytest.mark.integration)
        if not any(item.get_closest_marker(m) for m in ("integration", "slow", "bench", "compose")):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session")
def study_env() -> Iterator[None]:
    """The real CIFAR-10 images and the decoded-data cache every real-data test shares (one
    decode per machine), set before Ray starts so its worker processes inherit it."""
    if not ARCHIVE.exists():
        pytest.fail(f"real-data tests need {ARCHIVE} (clone the repo with shared/ beside it)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYBRIDNAS_CACHE", str(TEST_CACHE))
        yield


@pytest.fixture(scope="session")
def ray_cluster(study_env: None) -> Iterator[None]:
    """One local Ray for every study test, started as `hybridnas launch` starts its own;
    `hybridnas launch` reuses a running Ray."""
    import ray

    from hybridnas.workers.ray_workers import start_ray

    start_ray(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def hybridnas(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """Run the CLI in-process: (exit code, stdout + stderr)."""
    from hybridnas.cli.main import main

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out = capsys.readouterr()
        return code, out.out + out.err

    return run


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The local PostgreSQL; the Postgres path must not be skipped, so absence fails."""
    from hybridnas.storage import StorageError, open_storage

    try:
        open_storage(POSTGRES_URL, heartbeat_interval=None).engine.dispose()
    except StorageError as err:
        pytest.fail(
            f"PostgreSQL is required at {POSTGRES_URL} ({err}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`",
            pytrace=False,
        )
    return POSTGRES_URL
