from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "recordings" / "gpt-4o-2024-08-06-coinflip-10000"
SOURCE = ROOT / "recordings" / "source"
sys.path.insert(0, str(Path(__file__).parent))


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
def recording() -> Path:
    return RECORDING


def target_logprobs(tops, target, label_mass=None):
    """The target's logprob per response of a top_logprobs list array, as analysis extracts it."""
    import pyarrow as pa

    from detcheck.features import Codebook, flatten, label_prefix_codes, target_values

    if isinstance(tops, pa.ChunkedArray):
        tops = tops.combine_chunks()
    book = Codebook()
    flat = flatten(tops, book)
    labels = label_prefix_codes(book, label_mass) if label_mass else None
    return target_values(flat, len(tops), book.lookup(target), labels)
