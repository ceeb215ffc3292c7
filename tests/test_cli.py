"""The command line, driven as a user would, offline: replay through the real SDK."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from detcheck.cli import app
from detcheck.store import read_run

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def test_readme_demo_replays_the_publication(recording, tmp_path):
    result = invoke("flip", "--n", "10000", "--replay", recording, "--out", tmp_path, "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("42 distinct Heads probabilities in 10,000 calls")
    assert "clusters: 12 at 0.01 pp" in result.stdout
    assert "fp_eb9dce56a8 5,512, fp_f9f4fb6dbf 4,488" in result.stdout
    (run_dir,) = tmp_path.iterdir()
    run = read_run(run_dir)
    assert run.table.num_rows == 10_000
    assert run.meta["status"] == "complete"
    assert run.meta["endpoint"].startswith("replay:")
    # the stored rows went through the SDK and our parser, not a copy of the recording
    assert run.table.column("request_id").to_pylist()[:2] == ["replay-1", "replay-2"]
    assert len(set(run.table.column("response_id").to_pylist())) == 10_000


def test_flip_json_is_one_object_on_stdout(recording, tmp_path):
    result = invoke(
        "flip",
        "--n",
        "300",
        "--replay",
        recording,
        "--out",
        tmp_path,
        "--json",
        "--threshold",
        "0.01",
        "--threshold",
        "0.0001",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # nothing else on stdout
    for key in (
        "n",
        "target",
        "distinct",
        "threshold",
        "threshold_unit",
        "clusters",
        "fingerprints",
        "missing_target",
        "errors",
        "by_threshold",
        "run_path",
    ):
        assert key in data
    assert data["n"] == 300 and data["target"] == "Heads" and data["errors"] == 0
    assert data["threshold"] == 0.01 and data["threshold_unit"] == "pp"
    assert set(data["by_threshold"]) == {"0.01", "0.0001"}
    assert data["by_threshold"]["0.01"] == len(data["clusters"])
    assert sum(c["count"] for c in data["clusters"]) == 300
    values = [v for c in data["clusters"] for v in c["values"]]
    assert len(values) == data["distinct"]
    assert [v["prob_pct"] for v in values] == sorted(v["prob_pct"] for v in values)
    assert sum(sum(v["fingerprints"].values()) for v in values) == 300
    assert "distinct Heads probabilities" in result.stderr  # the human report went to stderr


def test_analyze_reproduces_the_published_clusters(recording):
    result = invoke(
        "analyze",
        recording,
        "--json",
        "--threshold",
        "0.01",
        "--threshold",
        "0.001",
        "--threshold",
        "0.0001",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n"] == 10_000 and data["distinct"] == 42
    assert data["by_threshold"] == {"0.01": 12, "0.001": 13, "0.0001": 17}
    assert data["fingerprints"] == {"fp_eb9dce56a8": 5512, "fp_f9f4fb6dbf": 4488}
    assert data["clusters"][0]["min_pct"] == pytest.approx(85.1854379113, abs=1e-9)


def test_analyze_several_runs_adds_them_up(recording, tmp_path):
    for _ in range(2):
        assert (
            invoke("flip", "--n", "50", "--replay", recording, "--out", tmp_path, "-q").exit_code
            == 0
        )
    data = json.loads(invoke("analyze", tmp_path, "--json").stdout)
    assert data["n"] == 100 and len(data["runs"]) == 2


def test_analyze_other_token(recording):
    data = json.loads(invoke("analyze", recording, "--json", "--token", "T").stdout)
    assert data["target"] == "T" and data["n"] == 10_000 and data["missing_target"] == 0


def test_show_prints_a_top20_table(recording):
    result = invoke("show", recording, "--row", "6")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Log Probability" in result.stdout and "Percentage" in result.stdout
    assert any(line.startswith('" Heads"') for line in lines)  # the leading space is visible
    assert "98.9008786933" in result.stdout
    assert "total probability covered: 99.99" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flip", "--n", "0", "--replay", "{rec}"], "--n must be at least 1"),
        (
            ["flip", "--n", "5", "--replay", "{rec}", "--threshold", "-0.1"],
            "--threshold must be >= 0",
        ),
        (["flip", "--n", "5"], "OPENAI_API_KEY is not set"),
        (["flip", "--replay", "{tmp}/missing"], "no such file"),
        (["analyze", "{tmp}/missing"], "no such file"),
        (["analyze", "{tmp}/foreign.parquet"], "not one detcheck wrote"),
        (["analyze", "{rec}", "--threshold", "-1"], "--threshold must be >= 0"),
        (["show", "{rec}", "--row", "10000"], "--row must be between 0 and 9999"),
        (["flip", "--replay", "{rec}", "--top-logprobs", "21"], "--top-logprobs must be between"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(recording, tmp_path, args, message):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "foreign.parquet")
    args = [a.format(rec=recording, tmp=tmp_path) for a in args] + ["--out", tmp_path / "o"][
        : 2 if args[0] == "flip" else 0
    ]
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("detcheck: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = invoke("analyze", tmp_path / "missing", "--debug")
    assert result.exit_code != 0
    assert result.exception is not None  # raised instead of being turned into one line


def test_every_command_has_help_and_readme_docs():

    from conftest import manual_text

    readme = manual_text()
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert command.callback.__doc__, f"{name} has no help"
        assert f"detcheck {name}" in readme, f"the manual does not document detcheck {name}"


def test_analyze_json_has_the_statistics_keys(recording):
    data = json.loads(invoke("analyze", recording, "--json").stdout)
    assert data["headline"].startswith("42 distinct Heads probabilities in 10,000 calls")
    assert "about 83 exist by Chao1" in data["headline"]
    assert data["modal"]["count"] == 3391 and data["modal"]["share"] == 0.3391
    lo, hi = data["modal"]["share_ci95"]
    assert lo < 0.3391 < hi
    lo, hi = data["unseen"].pop("chao1_ci95")
    assert 42 < lo < 82.5 < hi  # one doubleton: a wide interval, never below what was seen
    assert data["unseen"] == {
        "observed": 42,
        "singletons": 9,
        "doubletons": 1,
        "chao1": 82.5,
        "p_new": 0.0009,
    }
    assoc = data["fingerprint_association"]
    assert set(assoc) >= {"chi2", "dof", "p_value", "mutual_information_bits"}
    assert assoc["dof"] == (12 - 1) * (2 - 1)
    assert data["top_token"]["modal_token"] == "Heads" and data["top_token"]["flips"] == 0
    assert set(data["decomposition"]) >= {
        "absolute_vectors",
        "relative_signatures",
        "logit_grid_step",
    }
    assert data["decomposition"]["absolute_vectors"] == 42
    assert data["spread"]["min_pct"] == pytest.approx(85.1854379113, abs=1e-9)
    assert data["accumulation"][-1] == {"calls": 10000, "distinct": pytest.approx(42.0)}


def test_space_logprob_and_label_mass(recording):
    data = json.loads(
        invoke("analyze", recording, "--json", "--space", "logprob", "--threshold", "0.001").stdout
    )
    assert data["space"] == "logprob" and data["distinct"] == 42
    assert 1 <= data["by_threshold"]["0.001"] <= 42
    mass = json.loads(invoke("analyze", recording, "--json", "--label-mass").stdout)
    assert mass["label_mass"] and mass["n"] == 10_000
    # Heads + Head + " Heads" (+ HEAD? no: case differs) carry more mass than Heads alone
    assert mass["clusters"][0]["min_pct"] > 85.1854379113
    bad = invoke("analyze", recording, "--space", "bits")
    assert bad.exit_code == 2 and "--space must be one of" in bad.stderr


def test_plot_writes_an_image(recording, tmp_path):
    result = invoke("plot", recording, "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert invoke("plot", recording, "-o", tmp_path / "p.gif").exit_code == 2


def test_plot_without_matplotlib_says_how_to_get_it(recording, tmp_path):
    import subprocess
    import sys

    # a Python in which matplotlib cannot be imported (the import system, not detcheck, is faked)
    code = (
        "import sys; sys.modules['matplotlib'] = None; from detcheck.cli import main; "
        f"sys.argv = ['detcheck', 'plot', {str(recording)!r}, '-o', {str(tmp_path / 'p.png')!r}]; "
        "main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install matplotlib" in result.stderr


def test_version_module_entry_point_and_short_n(recording, tmp_path):
    import subprocess
    import sys

    from detcheck import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"detcheck {__version__}"
    module = subprocess.run(
        [sys.executable, "-m", "detcheck", "--version"], capture_output=True, text=True
    )
    assert module.returncode == 0 and module.stdout.strip() == f"detcheck {__version__}"
    short = runner.invoke(
        app, ["flip", "-n", "7", "--replay", str(recording), "--out", str(tmp_path), "--json"]
    )
    assert short.exit_code == 0, short.stderr
    assert json.loads(short.stdout)["n"] == 7


def test_analyze_a_token_that_never_appears_says_so(recording):
    result = runner.invoke(app, ["analyze", str(recording), "--token", "Zebra"])
    assert result.exit_code == 2
    assert "--token 'Zebra' is not among the top logprobs of any of the 10,000" in result.stderr


def test_space_logprob_shows_logprobs_so_rare_values_stay_apart(recording):
    # ' Heads' is rare (~3e-5 %): as percentages at 10 decimals its values print alike
    result = runner.invoke(
        app, ["analyze", str(recording), "--token", " Heads", "--space", "logprob"]
    )
    assert result.exit_code == 0, result.stderr
    assert "Logprob (nats)" in result.stdout
    table = result.stdout.split("\n\n")[1].splitlines()[2:]
    shown = [line.split()[0] for line in table if line.strip() and not line.startswith("--")]
    data = json.loads(
        runner.invoke(
            app, ["analyze", str(recording), "--token", " Heads", "--space", "logprob", "--json"]
        ).stdout
    )
    assert len(shown) == data["distinct"] == len(set(shown)) > 1


def test_one_call_is_one_call(recording, tmp_path):
    result = runner.invoke(
        app, ["flip", "-n", "1", "--replay", str(recording), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.stderr
    assert "1 distinct Heads probability in 1 call;" in result.stdout
