"""The first hour after `pip install detcheck`, outside the repository: the wheel is built,
installed into a fresh virtualenv, and run from an empty directory. The demo works (its
recording ships in the package), `--help` opens with how to start, and a probe of an endpoint
that answers every request with 404 says it saw nothing.

Offline: the wheel is installed without its dependencies, which the fresh environment reads
from this one's site-packages (the project itself is not there: it is an editable install)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import ROOT
from fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh environment's bin directory, an empty working directory)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("needs uv to build and install the wheel")
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    built = subprocess.run(
        [uv, "build", "--wheel", "--offline", "--out-dir", str(dist)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("detcheck-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "detcheck/recordings/gpt-4o-coinflip/part-00000.parquet" in names
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [uv, "pip", "install", "--offline", "--no-deps", "--python", str(venv / "bin" / "python"),
         str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    empty = root / "empty"
    empty.mkdir()
    return venv / "bin", empty


def run(installed, *args, timeout=300):
    bin_dir, cwd = installed
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DETCHECK_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / "detcheck"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_installed_package_is_the_wheel_not_the_source_tree(installed):
    bin_dir, cwd = installed
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import detcheck; print(detcheck.__file__)"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(bin_dir.parent) in where and str(ROOT / "src") not in where


def test_the_demo_runs_from_an_empty_directory(installed):
    done = run(installed, "flip", "--n", "10000", "--replay", "gpt-4o-coinflip", "-q")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "42 distinct Heads probabilities in 10,000 calls" in done.stdout
    assert "clusters: 12 at 0.01 pp" in done.stdout
    flat = " ".join(done.stdout.split())  # as read, across folded lines
    assert "reconstructed from published figures" in flat  # not "measured at OpenAI"
    (run_dir,) = (installed[1] / "runs").iterdir()
    assert (run_dir / "_run.json").is_file()


def test_the_no_key_message_suggests_a_demo_that_works_here(installed):
    refused = run(installed, "flip")
    assert refused.returncode == 2
    suggested = refused.stderr.split("try the offline demo: ", 1)[1].split()
    assert suggested[:2] == ["detcheck", "flip"] and "gpt-4o-coinflip" in suggested
    demo = run(installed, *suggested[1:], "-n", "100", "-q")
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "in 100 calls" in demo.stdout


def test_help_opens_with_how_to_start(installed):
    done = run(installed, "--help")
    assert done.returncode == 0
    text = done.stdout
    demo = text.index("detcheck flip --n 10000 --replay gpt-4o-coinflip")
    live = text.index("detcheck flip --base-url")
    assert demo < live < text.index("Commands")


def test_a_probe_of_an_endpoint_that_answers_404_says_it_saw_nothing(installed):
    def not_found(i, request):
        return Reply(404, b'{"error": {"message": "Not Found"}}')

    with FakeOpenAI(not_found) as server:
        bin_dir, cwd = installed
        env = {**os.environ, "OPENAI_API_KEY": "unused"}
        done = subprocess.run(
            [str(bin_dir / "detcheck"), "probe", "--base-url", server.base_url, "--model", "m",
             "--json"],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 3, done.stderr
    data = json.loads(done.stdout)
    assert data["seed_accepted"] is None and data["logprobs"] is None
    assert "accepted" not in done.stderr and "not tested (HTTP 404" in done.stderr
