"""Artifact locations: directories as before, and S3 against a real moto server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import optuna
import pytest
from moto.server import ThreadedMotoServer
from optuna.artifacts import download_artifact, upload_artifact
from test_dashboard import _free_port, _wait_for

from hybridnas.storage import (
    StorageError,
    artifact_store,
    artifacts_location,
    is_shared_location,
    open_storage,
)

SECRET = "dummy-secret-" + uuid.uuid4().hex[:8]


@pytest.fixture(autouse=True)
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and no config files or artifact folder from the machine running the tests."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "HYBRIDNAS_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "dummy-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server, which boto3 reaches through $AWS_ENDPOINT_URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    name = f"nas-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def trial(tmp_path: Path) -> optuna.Trial:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    return optuna.create_study(study_name="arts", storage=open_storage(url, heartbeat_interval=None)).ask()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("name: tiny\n")
    return path


def _upload(location: str, trial: optuna.Trial, path: Path) -> str:
    return upload_artifact(artifact_store=artifact_store(None, location), file_path=str(path), study_or_trial=trial, mimetype="application/yaml")


@pytest.mark.integration  # a moto S3 server
def test_s3_artifact_lands_under_the_prefix(bucket: str, trial: optuna.Trial, config_file: Path, tmp_path: Path) -> None:
    location = f"s3://{bucket}/some/prefix/"
    artifact_id = _upload(location, trial, config_file)

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"some/prefix/{artifact_id}"]
    back = tmp_path / "back.yaml"
    download_artifact(artifact_store=artifact_store(None, location), artifact_id=artifact_id, file_path=str(back))
    assert back.read_text() == "name: tiny\n"
    assert artifacts_location(None, location) == f"s3://{bucket}/some/prefix"
    assert is_shared_location(artifacts_location(None, location))


@pytest.mark.integration  # a moto S3 server
def test_missing_bucket_is_one_line(bucket: str) -> None:
    location = f"s3://{bucket}-gone/prefix"
    with pytest.raises(StorageError, match=f"cannot open the artifact store {location}: no bucket '{bucket}-gone'") as info:
        artifact_store(None, location)
    assert "\n" not in str(info.value) and SECRET not in str(info.value)


def test_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(StorageError, match=f"cannot open the artifact store s3://b/p: Could not connect .*{endpoint}") as info:
        artifact_store(None, "s3://b/p")
    assert "\n" not in str(info.value) and SECRET not in str(info.value)


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(StorageError, match=r"need boto3: pip install 'hybridnas\[s3\]'$"):
        artifact_store(None, "s3://b/p")


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_directory_location_still_works(form: str, trial: optuna.Trial, config_file: Path, tmp_path: Path) -> None:
    folder = (tmp_path / "shared" / "arts").resolve()
    artifact_id = _upload(str(folder) if form == "path" else folder.as_uri(), trial, config_file)
    assert (folder / artifact_id).read_text() == "name: tiny\n"
    assert artifacts_location(None, str(folder)) == folder.as_uri()


def test_env_and_default_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = tmp_path.resolve()
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    default = artifacts_location(url)
    assert default == str(tmp_path / "nas-artifacts")
    assert not is_shared_location(default)
    monkeypatch.setenv("HYBRIDNAS_ARTIFACTS", "s3://env-bucket")
    assert artifacts_location(url) == "s3://env-bucket"
    assert artifacts_location(url, str(tmp_path / "flag")) == (tmp_path / "flag").as_uri()


@pytest.mark.parametrize(
    "location, shared",
    [("s3://b/p", True), ("S3://b", True), ("file:///mnt/nfs/arts", True), ("/mnt/nfs/arts", False), ("arts", False)],
)
def test_is_shared_location(location: str, shared: bool) -> None:
    assert is_shared_location(location) is shared


@pytest.mark.parametrize(
    "location, reason",
    [
        ("gs://b/p", "unsupported artifact location scheme 'gs' in gs://b/p"),
        ("s3:///p", "an S3 artifact location is s3://bucket/prefix"),
        ("file://host/p", "a file artifact location is file:///absolute/path"),
    ],
)
def test_bad_locations(location: str, reason: str) -> None:
    with pytest.raises(StorageError, match=reason):
        artifact_store(None, location)


@pytest.mark.integration  # a moto S3 server and the real optuna-dashboard
def test_dashboard_serves_an_s3_artifact(bucket: str, trial: optuna.Trial, config_file: Path, tmp_path: Path) -> None:
    location = f"s3://{bucket}/runs"
    artifact_id = _upload(location, trial, config_file)
    url, port = f"sqlite:///{tmp_path / 'nas.db'}", _free_port()
    serve = f"from hybridnas.reports import serve_dashboard; serve_dashboard({url!r}, '127.0.0.1', {port}, {location!r})"
    proc = subprocess.Popen([sys.executable, "-c", serve], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait_for(f"{base}/api/meta", proc)["artifact_is_available"] is True
        study_id, trial_id = trial.study._study_id, trial._trial_id
        with urllib.request.urlopen(f"{base}/artifacts/{study_id}/{trial_id}/{artifact_id}", timeout=5) as response:
            assert response.headers["Content-Type"] == "application/yaml"
            assert response.read() == b"name: tiny\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.mark.integration  # a moto S3 server and a launch with its own local Ray
@pytest.mark.usefixtures("study_env")
def test_a_launch_keeps_every_trials_files_in_s3(bucket: str, tmp_path: Path) -> None:
    """The launcher's actors upload to the bucket, and the study remembers where, for workers
    started later by hand and for the dashboard."""
    import os
    import subprocess
    import sys

    from helpers import tiny_study_args
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    from hybridnas.objectives.study.records import ARTIFACTS_ATTR

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    launch = subprocess.run(
        [str(Path(sys.executable).with_name("hybridnas")), "launch", "--study", "s3", "--storage", url,
         *tiny_study_args(2, epochs=1), "--workers", "1", "--artifacts", f"s3://{bucket}/runs/s3"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    assert f"artifacts in s3://{bucket}/runs/s3" in launch.stdout
    storage = open_storage(url, heartbeat_interval=None)
    study = optuna.load_study(study_name="s3", storage=storage)
    assert study.user_attrs[ARTIFACTS_ATTR] == f"s3://{bucket}/runs/s3"
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])}
    store = artifact_store(None, f"s3://{bucket}/runs/s3")
    for t in study.trials:
        metas = {m.filename: m for m in get_all_artifact_meta(t, storage=storage)}
        assert set(metas) == {f"trial-{t.number}-config.yaml", f"trial-{t.number}-architecture.svg"}
        assert all(f"runs/s3/{m.artifact_id}" in keys for m in metas.values())
        meta = metas[f"trial-{t.number}-config.yaml"]
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(tmp_path / meta.filename))
        assert "stages:" in (tmp_path / meta.filename).read_text()
