import glob
import hashlib
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from resnas.data import DataConfig, load_data
from resnas.search import loop

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"

# A 2-stage space of tiny nets (12 architectures) for real searches that take seconds.
TINY_SPACE = """
description = "tiny test space"
[fixed]
widths = [4, 8]
stem_width = 4
[choices]
blocks = [1, 2]
k = [1, 2, 3]
kernels = [[3], [3, 3]]
"""


@pytest.fixture(autouse=True)
def one_core(monkeypatch):
    """In-process searches run as on a one-core machine (one worker) unless a test names its workers: their trial
    order, and so what they assert, is then the same on every machine."""
    monkeypatch.setattr(loop, "cores", lambda: 1)


@pytest.fixture(scope="session")
def harness():
    """benchmarks/search_replay.py, loaded by path (benchmarks/ is no package); its neighbours import once loaded."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_replay", BENCHMARKS / "search_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def digits():
    return load_data(DataConfig())


@pytest.fixture(scope="session")
def tiny_space_text():
    return TINY_SPACE


@pytest.fixture
def cifar_files(monkeypatch):
    """Writes CIFAR-10/100 in torchvision's real on-disk format (python pickles) under a folder; they are not the
    published files, so torchvision is told their checksums."""
    from torchvision.datasets import CIFAR10, CIFAR100

    def write(root, hundred: bool = False, n_train: int = 40, n_test: int = 20):
        folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        key = "fine_labels" if hundred else "labels"
        classes = 100 if hundred else 10
        names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        sums = {}
        for name in names:
            n = n_test if "test" in name else n_train // (1 if hundred else 5)
            entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     key: [int(i % classes) for i in range(n)]}
            (folder / name).write_bytes(pickle.dumps(entry))
            sums[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
        meta = "meta" if hundred else "batches.meta"
        (folder / meta).write_bytes(pickle.dumps({"fine_label_names" if hundred else "label_names":
                                                  [f"c{i}" for i in range(classes)]}))
        sums[meta] = hashlib.md5((folder / meta).read_bytes()).hexdigest()
        cls = CIFAR100 if hundred else CIFAR10
        monkeypatch.setattr(cls, "train_list", [[n, sums[n]] for n, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[n, sums[n]] for n, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": sums[cls.meta["filename"]]})
        return root

    return write


class Postgres:
    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
        if not bins[-1]:
            raise FileNotFoundError("initdb")
        self.bin = Path(bins[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="resnas-pg-"))
        self.data = self.root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.root, "postgres")
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", self.opts, "-w", "start")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"  # the README's form: psycopg 3

    def run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def restart(self) -> None:
        # -l: the new postmaster must not inherit (and hold open) our captured output
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-m", "fast", "-o", self.opts, "-w",
                 "restart")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster on a free local port (as the `postgres` user when run as root). Under CI a
    missing server fails the tests that need it; elsewhere they skip."""
    try:
        server = Postgres()
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is needed under CI (.ci/run installs it): {e}")
        pytest.skip(f"no PostgreSQL server here: {e}")
    yield server
    server.stop()


@pytest.fixture
def s3():
    """A moto S3 server on a free local port, with one bucket; the AWS_* variables boto3 reads."""
    pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.2)
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket="ckpts")
        yield env, client
    finally:
        server.terminate()
        server.wait(10)
