"""detcheck's pytest plugin, registered when detcheck is installed (no conftest needed).

`detcheck_replay(path)` starts a loopback OpenAI-compatible server that serves a recorded run's
responses in order and returns its base URL: a user's own client, retries or eval harness meet
recorded real non-determinism, offline. The servers stop when the test ends."""

from __future__ import annotations

import pytest


@pytest.fixture
def detcheck_replay():
    from detcheck.testing import ReplayServer

    servers: list[ReplayServer] = []

    def start(recording) -> str:
        server = ReplayServer(recording)
        servers.append(server)
        return server.base_url

    yield start
    for server in servers:
        server.close()
