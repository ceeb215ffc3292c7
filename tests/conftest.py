from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "src" / "detcheck" / "recordings" / "gpt-4o-coinflip"  # ships in the wheel
SOURCE = ROOT / "recordings" / "source"
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "interop"))


def _loopback_only(address) -> bool:
    if isinstance(address, tuple):
        host = address[0]
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"
    return True  # unix sockets


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests talk to 127.0.0.1 only: anything else fails loudly instead of reaching out."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if not _loopback_only(address):
            raise OSError(f"test tried to reach the network: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("DETCHECK_DEBUG", raising=False)


@pytest.fixture
def bucket(monkeypatch):
    """A local S3-compatible server (moto) on 127.0.0.1 with a bucket `detcheck`: yields the
    query string that points pyarrow at it, and a filesystem to look inside."""
    import pyarrow.fs as pafs

    moto_server = pytest.importorskip("moto.server")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its buckets in the test process, across servers: start from none
    import urllib.request

    reset = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    fs, _ = pafs.FileSystem.from_uri(f"s3://detcheck?{query}&allow_bucket_creation=true")
    fs.create_dir("detcheck")
    yield query, fs
    server.stop()


@pytest.fixture
def recording() -> Path:
    return RECORDING


def target_logprobs(tops, target, label_mass=None):
    """The target's logprob per response of a top_logprobs list array, as analysis extracts it."""
    import pyarrow as pa

    from detcheck.analysis.features import Codebook, flatten, label_prefix_codes, target_values

    if isinstance(tops, pa.ChunkedArray):
        tops = tops.combine_chunks()
    book = Codebook()
    flat = flatten(tops, book)
    labels = label_prefix_codes(book, label_mass) if label_mass else None
    return target_values(flat, len(tops), book.lookup(target), labels)


def write_run(
    path,
    logprobs,
    fingerprints,
    tokens=None,
    started_at="2026-01-01T00:00:00+00:00",
    model="gpt-4o-2024-08-06",
    endpoint="https://api.openai.com/v1",
):
    """A stored run with the given Heads logprobs (and fingerprints, generated tokens)."""
    import math

    from detcheck.store import RunWriter

    meta = {
        "run_id": path.name,
        "target": "Heads",
        "label": "Heads",
        "status": "complete",
        "started_at": started_at,
        "endpoint": endpoint,
        "config": {"model": model},
        "n_requested": len(logprobs),
    }
    writer = RunWriter(path, meta, rows_per_part=len(logprobs) + 1)
    for i, (lp, fp) in enumerate(zip(logprobs, fingerprints)):
        token = tokens[i] if tokens is not None else "Heads"
        t_lp = math.log1p(-math.exp(lp)) if lp < 0 else -30.0
        top = [{"token": "Heads", "logprob": float(lp)}, {"token": "T", "logprob": t_lp}]
        if token == "T":
            top.reverse()
        writer.append(
            {
                "run_id": path.name,
                "seq": i,
                "call": i,
                "attempt": 1,
                "ok": True,
                "system_fingerprint": fp,
                "token": token,
                "top_logprobs": top,
                "started_at": 1_767_225_600_000_000 + i,
            }
        )
    writer.close()
    return path


def reference_calls():
    """The 10,000 published calls as (Heads logprob, fingerprint) arrays, from the recording."""
    import numpy as np

    from detcheck.store import read_run

    table = read_run(RECORDING, columns=["system_fingerprint", "top_logprobs"]).table
    lps = target_logprobs(table.column("top_logprobs"), "Heads")
    fps = np.array(table.column("system_fingerprint").to_pylist(), dtype=object)
    return lps, fps


def manual_text() -> str:
    """The front page and every page of the manual: where a user looks for what detcheck does."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n\n".join(p.read_text() for p in pages)
