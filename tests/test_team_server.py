"""A team's tracking server: `mlflow server` on a PostgreSQL backend store with an artifact
root, a pipeline run against it through MLFLOW_TRACKING_URI, and everything read back
through the REST API. Opt-in (`-m server`): it starts PostgreSQL (Debian's `postgresql`
package) on loopback for the test, as the `postgres` user when run as root."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from glob import glob
from pathlib import Path

import pytest

pytestmark = pytest.mark.server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        pytest.fail(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return found


def as_postgres_user(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def wait_until(check, what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} did not come up within {seconds:.0f} s")


@pytest.fixture
def postgres():
    """A PostgreSQL server on loopback with a database `mlflow`; yields its SQLAlchemy URI.
    Its folder is outside pytest's tmp_path, which the `postgres` user may not enter."""
    with tempfile.TemporaryDirectory(prefix="psl-postgres-") as name:
        yield from _postgres(Path(name))


def _postgres(folder: Path):
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(
        as_postgres_user([postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "psl"]),
        check=True,
        capture_output=True,
    )
    pg_ctl = postgres_bin("pg_ctl")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        as_postgres_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "psl", "mlflow"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://psl@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True)


@pytest.fixture
def team_server(postgres, tmp_path):
    """`mlflow server` with the PostgreSQL backend store and a served artifact root."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            postgres,
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "mlflow-server.log", "w"),
        start_new_session=True,  # its own process group: the server starts job workers of its own
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{url}/health", timeout=2).status == 200, "mlflow server")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def rest(url: str, endpoint: str, body: dict | None = None, **query) -> dict:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else ""),
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_pipeline_against_a_postgres_backed_server(team_server, tiny_root, tmp_path):
    settings = ["pipeline.students=[psl-1s]", "pipeline.baseline=false", "student.tracking.log_model=true"]
    command = [sys.executable, "-m", "psl", "pipeline", "--profile", "tiny", "--data", str(tiny_root)]
    for item in settings:
        command += ["--set", item]
    env = {**os.environ, "MLFLOW_TRACKING_URI": team_server}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    (experiment,) = [
        e for e in rest(team_server, "experiments/search", {"max_results": 10})["experiments"] if e["name"] == "psl"
    ]
    runs = rest(team_server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs}
    by_stage = {tags[r["info"]["run_id"]]["psl.stage"]: r for r in runs}
    assert len(runs) == 5 and sorted(by_stage) == ["label", "pipeline", "student", "teacher", "transfer"]
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    student = by_stage["student"]["info"]["run_id"]
    # The student's linear probe on the FSD-like set (the pipeline's transfer stage).
    transfer = tags[by_stage["transfer"]["info"]["run_id"]]
    assert transfer["psl.model_run_id"] == student and transfer["psl.transfer_mode"] == "linear"
    transfer_metrics = {m["key"] for m in by_stage["transfer"]["data"]["metrics"]}
    assert "transfer/fsd50k/linear/mAP" in transfer_metrics
    history = rest(team_server, "metrics/get-history", run_id=student, metric_key="val/mAP")["metrics"]
    assert len(history) == 2  # one validation per epoch, tiny profile: 2 epochs
    metrics = {m["key"]: m["value"] for m in by_stage["student"]["data"]["metrics"]}
    assert 0 < metrics["test/mAP"] <= 1
    # Artifacts went to the server's artifact root and come back through it.
    listed = {f["path"] for f in rest(team_server, "artifacts/list", run_id=student)["files"]}
    assert {"checkpoints", "per_class_ap.csv", "per_class_ap.png"} <= listed
    assert any((tmp_path / "artifacts").rglob("best.pt"))
    parent = by_stage["pipeline"]["info"]["run_id"]
    with urllib.request.urlopen(
        f"{team_server}/get-artifact?" + urllib.parse.urlencode({"path": "results.txt", "run_uuid": parent})
    ) as response:
        results = response.read().decode()
    assert f"{metrics['test/mAP']:.4f}" in results
    champion = rest(team_server, "registered-models/alias", name="psl-student", alias="champion")
    assert champion["model_version"]["run_id"] == student
