"""Shared fixtures for the m2fp4 serve tests: a tiny checkpoint and a server on a loopback port
of its own choosing (started per test module, waited for on /health, killed at the end)."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

EXE = os.environ.get("M2FP4_EXE", "build/m2fp4")


def http(method, url, body=None, headers=None, timeout=60):
    """(status, bytes) of one request; HTTP errors are returned, not raised."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, model_dir, extra_args=(), env=None, model_arg=True):
        self.port = None
        self.base = None
        self.log = tempfile.NamedTemporaryFile(prefix="m2fp4-serve-", suffix=".log", delete=False)
        args = [EXE, "serve"]
        if model_arg:
            args.append(model_dir)
        # --port 0: the server binds a free port itself and logs it. (Picking a free port here
        # and passing it on races with every other test of a parallel ctest doing the same.)
        args += ["--port", "0", "--threads", "1", "--kv-cache-memory", "64M"]
        args += list(extra_args)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env or os.environ.copy())
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            if self.port is None:
                bound = re.search(r" on http://127\.0\.0\.1:(\d+)", self.output())
                if bound is None:
                    time.sleep(0.1)
                    continue
                self.port = int(bound.group(1))
                self.base = f"http://127.0.0.1:{self.port}"
            try:
                status, _ = http("GET", self.base + "/health", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become healthy: " + self.output())

    def output(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def metrics(self, headers=None):
        status, body = http("GET", self.base + "/metrics", headers=headers)
        assert status == 200
        values = {}
        for line in body.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name_labels, value = line.rsplit(" ", 1)
            name = name_labels.split("{", 1)[0]
            if "_bucket" in name:
                continue
            values[name] = values.get(name, 0.0) + float(value)
        return values

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        os.unlink(self.log.name)


@pytest.fixture(scope="session")
def tiny_model():
    with tempfile.TemporaryDirectory(prefix="m2fp4-tiny-") as d:
        subprocess.run([EXE, "make-tiny", "--out", d, "--preset", "tiny", "--seed", "1"],
                       check=True, capture_output=True)
        yield d


SERVE_FLAGS = ["--served-model-name", "tiny", "--tool-call-parser", "minimax_m2",
               "--reasoning-parser", "minimax_m2", "--enable-auto-tool-choice"]


@pytest.fixture(scope="module")
def server(tiny_model):
    s = Server(tiny_model, SERVE_FLAGS)
    yield s
    s.stop()
