"""The Meridian server the client tests run against: the real `meridian serve` binary on
127.0.0.1 with an ephemeral port and temporary disks. Shared by every client-test suite
(each suite runs in the venv of its own client library)."""

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

ACCESS_KEY = "meridian-client-test"
SECRET_KEY = "meridian-client-test-secret"
REGION = "us-east-1"


def meridian_binary() -> str:
    explicit = os.environ.get("MERIDIAN_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/meridian/target"))
    return str(Path(target) / "debug" / "meridian")


def free_port() -> int:
    """A loopback port that was free a moment ago, for servers that must name each other."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCA:
    """A private CA made for the test (trustme) and a server certificate it issued for
    localhost and 127.0.0.1, written as PEM files; `ca_file` is what clients trust."""

    def __init__(self):
        import trustme
        self.dir = Path(tempfile.mkdtemp(prefix="meridian-ca-"))
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("localhost", "127.0.0.1")
        self.ca_file = self.dir / "ca.pem"
        self.cert_file = self.dir / "server.pem"
        self.key_file = self.dir / "server.key"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(self.key_file))
        with open(self.cert_file, "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def config(self) -> str:
        """The `[tls]` table for a server using this certificate."""
        return f'[tls]\ncert = "{self.cert_file}"\nkey = "{self.key_file}"\n'


class Server:
    def __init__(self, erasure: str = "4+2", extra_config: str = "", port: int = 0):
        self.dir = Path(tempfile.mkdtemp(prefix="meridian-client-"))
        self.config = self.dir / "meridian.toml"
        self.config.write_text(
            f'shutdown_grace = "5s"\n{extra_config}\n'
            f'[root]\naccess_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n'
        )
        self.erasure = erasure
        self.address = f"127.0.0.1:{port}"
        self.log = open(self.dir / "server.log", "ab")
        self.endpoint = None
        self._launch()

    def _launch(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
        env["MERIDIAN_LOG"] = "info"
        self.proc = subprocess.Popen(
            [meridian_binary(), "serve", "--config", str(self.config), "--address", self.address,
             "--data", str(self.dir), "--erasure", self.erasure],
            stdout=subprocess.PIPE, stderr=self.log, env=env,
        )
        ready = threading.Event()

        def read_stdout():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                if line.startswith("meridian listening on "):
                    self.endpoint = line.split()[3]
                    ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(60):
            self.proc.kill()
            raise RuntimeError("meridian did not start: " + (self.dir / "server.log").read_text())
        # A restart keeps the port, so clients made before it keep working.
        self.address = self.endpoint.split("://", 1)[1]

    def kill(self):
        """SIGKILL, keeping the data: `restart()` brings it back on the same port."""
        self.proc.kill()
        self.proc.wait()

    def restart(self):
        self._launch()

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


REPO = Path(__file__).resolve().parents[2]


def _free_base(count: int) -> int:
    """A base port with BASE+1..BASE+count and BASE+90, BASE+91 free a moment ago."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(20000, 60000, 100)
        ports = [base + i for i in range(1, count + 1)] + [base + 90, base + 91]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


class ClusterServer:
    """A region of `nodes` nodes on one etcd, started by `deploy/local-cluster.sh` as a user
    starts it. `endpoint` is node 1; `endpoints` all of them (clients spread over them)."""

    def __init__(self, nodes: int = 3):
        self.dir = Path(tempfile.mkdtemp(prefix="meridian-cluster-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
        env.update(MERIDIAN_CLUSTER_DIR=str(self.dir), MERIDIAN_BASE_PORT=str(_free_base(nodes)),
                   MERIDIAN_BIN=meridian_binary(), MERIDIAN_ROOT_USER=ACCESS_KEY,
                   MERIDIAN_ROOT_PASSWORD=SECRET_KEY)
        self.env = env
        script = str(REPO / "deploy" / "local-cluster.sh")
        out = subprocess.run([script, str(nodes)], capture_output=True, text=True, env=env,
                             timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"local-cluster.sh failed:\n{out.stdout}\n{out.stderr}")
        self.endpoints = []
        self.pids = []
        for line in out.stdout.splitlines():
            if line.startswith("node "):
                # node I: http://127.0.0.1:PORT pid PID
                parts = line.split()
                self.endpoints.append(parts[2])
                self.pids.append(int(parts[4]))
        assert len(self.endpoints) == nodes, out.stdout
        self.endpoint = self.endpoints[0]
        self.address = self.endpoint.split("://", 1)[1]

    def kill(self):
        import pytest
        pytest.skip("restarting a node of a region is tested by tests/tests/cluster.rs")

    def stop(self):
        subprocess.run([str(REPO / "deploy" / "local-cluster.sh"), "stop"], env=self.env,
                       capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


def new_account(server, verify):
    """A run-time key made with `meridian admin key create` (as root), with no grants, and a
    boto3 client signing with it: (access key, client)."""
    import json
    import boto3
    from botocore.config import Config
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               MERIDIAN_ENDPOINT=server.endpoint)
    if verify:
        env["MERIDIAN_CA_FILE"] = verify
    made = json.loads(subprocess.run([meridian_binary(), "admin", "key", "create", "--json"],
                                     capture_output=True, text=True, env=env, timeout=60,
                                     check=True).stdout)
    client = boto3.client("s3", endpoint_url=server.endpoint, verify=verify, region_name=REGION,
                          aws_access_key_id=made["access_key"],
                          aws_secret_access_key=made["secret_key"],
                          config=Config(s3={"addressing_style": "path"},
                                        retries={"max_attempts": 1}))
    return made["access_key"], client
