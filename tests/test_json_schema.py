"""Pin the JSON detcheck writes: run.json and the --json report. A key added, removed or retyped
fails here until its version is bumped and the pin below is changed with it, deliberately."""

from __future__ import annotations

import json
import typing

from typer.testing import CliRunner

from detcheck.analysis.report import REPORT_VERSION, Report
from detcheck.cli import app
from detcheck.store.schema import RUN_JSON_VERSION
from fake_openai import FakeOpenAI

runner = CliRunner()
KEY = "sk-test-json-schema-0123456789"

REPORT_KEYS = {
    "report_version": int,
    "n": int,
    "target": str,
    "label": (str, type(None)),
    "label_mass": bool,
    "space": str,
    "models": list,
    "runs": list,
    "distinct": int,
    "threshold": float,
    "threshold_unit": str,
    "clusters": list,
    "by_threshold": dict,
    "fingerprints": dict,
    "missing_target": int,
    "errors": int,
    "errors_by_type": dict,
    "modal": (dict, type(None)),
    "unseen": dict,
    "accumulation": list,
    "fingerprint_association": (dict, type(None)),
    "time_association": (dict, type(None)),
    "concurrency_association": (dict, type(None)),
    "top_token": dict,
    "decomposition": dict,
    "spread": (dict, type(None)),
    "first_call": (dict, type(None)),
    "replayed": bool,
    "measured": dict,
    "headline": str,
}

RUN_JSON_KEYS = {
    "tags": dict,
    "schema_version": int,
    "run_json_version": int,
    "run_id": str,
    "status": str,
    "n_requested": int,
    "started_at": str,
    "ended_at": str,
    "config": dict,
    "request": dict,
    "label": str,
    "target": str,
    "targets": dict,
    "target_how": dict,
    "endpoint": str,
    "api": str,
    "replay_of": type(None),
    "concurrency": int,
    "rpm": (float, int, type(None)),
    "retry_policy": dict,
    "timeout_s": float,
    "background_load": int,
    "measurement": type(None),
    "via": str,
    "partition": type(None),
    "versions": dict,
    "client": str,
    "successes": int,
    "attempts": int,
    "notes": dict,
}
CONFIG_KEYS = {"model", "prompt", "labels", "temperature", "seed", "top_logprobs", "max_tokens"}
CONFIG_KEYS |= {"targets", "api", "kind"}
SESSION_KEYS = {"at", "successes", "concurrency", "rpm", "client", "ended_at", "background_load"}


def test_the_report_is_pinned(recording):
    assert REPORT_VERSION == 4
    assert set(typing.get_type_hints(Report)) == set(REPORT_KEYS)  # the typed report agrees
    for space, unit in (("pct", "pp"), ("logprob", "nats")):
        result = runner.invoke(app, ["analyze", str(recording), "--json", "--space", space])
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert set(data) == set(REPORT_KEYS)
        for key, kind in REPORT_KEYS.items():
            assert isinstance(data[key], kind), (key, type(data[key]))
        assert data["report_version"] == REPORT_VERSION
        assert (data["space"], data["threshold_unit"]) == (space, unit)


def test_run_json_is_pinned_with_its_sessions(tmp_path):
    assert RUN_JSON_VERSION == 5
    with FakeOpenAI() as server:
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        result = runner.invoke(
            app, ["flip", "--n", "4", "--out", str(tmp_path), "-q", "--json"], env=env
        )
        assert result.exit_code == 0, result.stderr
        run_dir = tmp_path / json.loads(result.stdout)["run_path"].rsplit("/", 1)[-1]
        meta = json.loads((run_dir / "_run.json").read_text())
        assert set(meta) == set(RUN_JSON_KEYS)
        for key, kind in RUN_JSON_KEYS.items():
            assert isinstance(meta[key], kind), (key, type(meta[key]))
        assert meta["run_json_version"] == RUN_JSON_VERSION
        assert set(meta["config"]) == CONFIG_KEYS

        # a resumed run adds its sessions, each with the same keys
        meta["n_requested"], meta["status"] = 6, "interrupted"
        (run_dir / "_run.json").write_text(json.dumps(meta))
        resumed = runner.invoke(app, ["flip", "--resume", str(run_dir), "-q"], env=env)
        assert resumed.exit_code == 0, resumed.stderr
    meta = json.loads((run_dir / "_run.json").read_text())
    assert set(meta) == set(RUN_JSON_KEYS) | {"resumed"}
    (session,) = meta["resumed"]
    assert set(session) == SESSION_KEYS
