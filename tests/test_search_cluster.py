"""A sweep on a real two-node Ray cluster with Ray 2.60's token authentication, through
``python -m search.tune --address HOST:PORT`` (issue 13).

The cluster is two ``ray start --block`` processes on this machine, each with its own ports: a
head and a second node (at its own loopback address, so that a trial's results name the node
that ran it), started as docs/search.md says. The head runs in Ray 2.60's default mode:
``RAY_AUTH_MODE`` unset and a token in ``~/.ray/auth_token`` (``HOME`` is a temporary folder), so
the head turns token authentication on by itself; the second node joins with
``RAY_AUTH_MODE=token``. Every process of the cluster is killed at the end, pass or fail.
"""
from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from ae_lightning.config import ROOT

RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


NODE_PORTS = ("--node-manager-port", "--object-manager-port", "--runtime-env-agent-port",
              "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port")


NODE_IP = "127.0.0.2"  # the second node's own address (loopback): the trials that ran there say so


def _node_ports(ports: list[int]) -> list[str]:
    return [f"{name}={port}" for name, port in zip(NODE_PORTS, ports, strict=True)]


def _wait_started(proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError(f"ray start did not come up:\n{log.read_text(errors='replace')[-3000:]}")


def _kill_marked(marker: str) -> None:
    """SIGKILL every process whose environment carries this cluster's marker (the ray start
    processes, and the GCS, raylets, agents and workers they started)."""
    needle = f"AE_TEST_CLUSTER={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


@pytest.fixture(scope="module")
def cluster():
    """(address, env of a machine holding the cluster's token in ~/.ray/auth_token)."""
    root = Path(tempfile.mkdtemp(prefix="aec", dir="/tmp"))  # short: Ray's socket paths must fit 107 chars
    home = root / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update(HOME=str(home), AE_TEST_CLUSTER=marker, OMP_NUM_THREADS="1")
    # every port of both nodes drawn at once, all held together: drawn apart, the OS may hand one out twice
    # (measured: the head's GCS port came back as its dashboard agent's, and Ray refused to start)
    port, client_port, *node_ports = _free_ports(2 + 2 * len(NODE_PORTS))
    common = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", "--min-worker-port=0", "--max-worker-port=0",
              "--block"]
    procs = []
    try:
        head_log = root / "head.log"
        head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", f"--temp-dir={root / 'ray'}",
                                 "--include-dashboard=false", f"--ray-client-server-port={client_port}",
                                 *_node_ports(node_ports[:len(NODE_PORTS)]), *common],
                                env=env, stdout=head_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(head)
        _wait_started(head, head_log)
        assert "Token authentication is enabled" in head_log.read_text()  # Ray 2.60's default with a token
        node_log = root / "node.log"
        node = subprocess.Popen([RAY, "start", f"--address=127.0.0.1:{port}", f"--node-ip-address={NODE_IP}",
                                 *_node_ports(node_ports[len(NODE_PORTS):]), *common],
                                env={**env, "RAY_AUTH_MODE": "token"}, stdout=node_log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(node)
        _wait_started(node, node_log)
        yield f"127.0.0.1:{port}", env
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _kill_marked(marker)
        for p in procs:
            p.wait(timeout=30)
        time.sleep(1.0)
        _kill_marked(marker)  # a worker that was being started while its raylet died
        shutil.rmtree(root, ignore_errors=True)


def _sweep(address: str, env: dict, data_dir: Path, storage: Path, name: str, timeout: float = 300):
    space = storage.parent / "space.yaml"
    space.write_text("space: {model.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}}\n")
    cmd = [sys.executable, "-m", "search.tune", "--variant", "linear", "--algo", "random", "--num-samples", "2",
           "--max-epochs", "2", "--space", str(space), "--data-dir", str(data_dir), "--subset", "1000",
           "--storage", str(storage), "--name", name, "--max-concurrent", "2", "--quiet", "--address", address,
           "--set", "data.download=false", "--set", "trainer.images_every_n_epochs=0",
           "--set", "model.optimizer=sgd", "--set", "data.batch_size=100"]
    env = {k: v for k, v in env.items() if k != "AE_TEST_CLUSTER"}  # the driver is not part of the cluster
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_node_sweep_with_token_auth(cluster, data_dir, tmp_path):
    address, env = cluster
    storage = tmp_path / "search"
    done = _sweep(address, env, data_dir, storage, "cluster")
    assert done.returncode == 0, done.stderr[-3000:]
    exp = storage / "cluster"
    with open(exp / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}, rows
    for r in rows:
        trial = Path(r["trial_dir"])
        assert trial.parent == exp and trial.name.startswith("trial_")
        assert int(r["epochs"]) == 2 and float(r["best_val_loss"]) > 0 and r["test_mse"]
        m = json.loads((trial / "metrics.json").read_text())
        assert m["best_val_loss"] == pytest.approx(float(r["best_val_loss"]))
        assert len(list((trial / "checkpoints").glob("best-*.ckpt"))) == 1 and list(trial.glob("events.out.tfevents.*"))
        assert not (trial / "checkpoints" / "last.ckpt").exists()  # a finished trial keeps its best checkpoint alone
    best = yaml.safe_load((exp / "best_trial.yaml").read_text())
    assert best["variant"] == "linear" and best["trainer"]["max_epochs"] == 2
    assert f"retrain: python train.py --config {exp / 'best.yaml'}" in done.stdout
    # Tune stamps every result with the IP of the node that ran the trial; the second node has its own
    ran_on = {json.loads(line)["node_ip"] for r in rows for line in (Path(r["trial_dir"]) / "result.json").open()}
    assert NODE_IP in ran_on, f"no trial ran on the second node ({NODE_IP}): {ran_on}"


@pytest.mark.parametrize("case", ["wrong", "missing"])
def test_a_wrong_or_missing_token_fails_in_one_line(cluster, data_dir, tmp_path, case):
    address, env = cluster
    if case == "wrong":
        env = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    else:
        (tmp_path / "empty_home").mkdir()
        env = {**env, "HOME": str(tmp_path / "empty_home")}
    t0 = time.time()
    done = _sweep(address, env, data_dir, tmp_path / "search", case, timeout=120)
    err = done.stderr.strip()
    assert done.returncode == 2 and err.startswith("error: ") and "\n" not in err, err
    assert "token" in err and "~/.ray/auth_token" in err and "RAY_AUTH_TOKEN" in err
    assert ("refused the token from RAY_AUTH_TOKEN" in err) == (case == "wrong")
    assert time.time() - t0 < 60  # not ray.init's retries
    assert not (tmp_path / "search" / case / "results.csv").exists()
