"""`detcheck verify` on real model variants with a known ground truth, beside two published
anchors at the same budget: SmolLM2-135M under llama-server (8 slots, continuous batching), the
F32 copy as the reference (it moves with batching), against variants from .ci/variants.py.

    uv run --group interop python bench/verify.py                  # every variant, 20 self runs
    uv run --group interop python bench/verify.py --self-runs 5 --only q4_1,step-0.1%

For each variant: the verdict, the calls each side needed, the distance and floor; then, on the
same single-token answers, the permutation test on mean top-5 logprobs (log-probability
tracking, Chauvin et al.), and on sampled completions (temperature 1, 8 tokens, as many per side
as verify's candidate needed) the MMD two-sample test with a Hamming kernel (Model Equality
Testing, Gao et al.): which detects what at p < 0.01. Then the reference against itself
(`--self-runs` times, both sides the same server): how often each calls it different.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))

import smollm2  # noqa: E402
import variants  # noqa: E402
from llama_server import serve  # noqa: E402

from detcheck.analysis.verify import anchors_of, vector  # noqa: E402
from detcheck.commands.verify import DEFAULT_PROMPTS, answers_of  # noqa: E402

ALPHA = 0.01
EXTRA = ("--no-repack",)
VARIANTS = {
    "q4_1": smollm2.q4_1,
    "q8_0": variants.q8_0,
    "step-1%": lambda: variants.step(0.01),
    "step-0.3%": lambda: variants.step(0.003),
    "step-0.1%": lambda: variants.step(0.001),
    "gemma": variants.gemma,
}


def verify(reference: str, candidate: str, out: Path) -> dict:
    env = {**os.environ, "OPENAI_API_KEY": "unused", "OPENAI_BASE_URL": candidate}
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "detcheck.cli", "verify", "--reference", reference, "--model",
         "smol", "-o", str(out), "--json", "-q"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"verify exited {done.returncode}: {done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    data["seconds"] = time.monotonic() - t0
    return data


def lpt_p(reference: dict, candidate: dict, rng, permutations: int = 2000) -> float:
    """Log-probability tracking: the permutation test on each prompt's mean top-5 logprobs."""
    blocks = []
    for prompt, ref in reference.items():
        cand = candidate.get(prompt)
        if not cand:
            continue
        anchors = anchors_of(ref)
        rows = np.array([vector(a, anchors) for a in [*ref, *cand]])
        blocks.append((rows, len(ref)))

    def statistic(assign) -> float:
        total = 0.0
        for (rows, _), labels in zip(blocks, assign):
            total += np.abs(rows[labels].mean(0) - rows[~labels].mean(0)).sum()
        return total

    return permutation_p(blocks, statistic, rng, permutations)


def permutation_p(blocks, statistic, rng, permutations: int) -> float:
    """The permutation p-value of `statistic` over per-prompt blocks (data, reference count):
    each block's labels shuffled within it, the observed split counted among the shuffles."""
    observed = statistic([np.arange(len(d)) < n for d, n in blocks])
    count = 0
    for _ in range(permutations):
        assign = [rng.permutation(np.arange(len(d)) < n) for d, n in blocks]
        count += statistic(assign) >= observed
    return (count + 1) / (permutations + 1)


def sample(url: str, prompts, per_prompt: int, tokens: int = 8) -> dict:
    """Sampled completions (temperature 1, a seed per call): token sequences per prompt."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=3)

    def one(item):
        prompt_id, text, k = item
        r = client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": text}], temperature=1.0,
            max_tokens=tokens, seed=1000 + k, logprobs=True,
        )  # fmt: skip
        content = (r.choices[0].logprobs and r.choices[0].logprobs.content) or []
        return prompt_id, tuple(t.token for t in content)

    jobs = [(p, text, k) for p, text in prompts for k in range(per_prompt)]
    out: dict = {}
    with ThreadPoolExecutor(8) as pool:
        for prompt_id, seq in pool.map(one, jobs):
            out.setdefault(prompt_id, []).append(seq)
    return out


def mmd_p(reference: dict, candidate: dict, rng, permutations: int = 500) -> float:
    """Model Equality Testing: MMD with a Hamming kernel on token sequences, per prompt, summed;
    the permutation p-value."""
    blocks = []
    for prompt, ref in reference.items():
        seqs = [*ref, *candidate.get(prompt, [])]
        length = max(len(s) for s in seqs)
        padded = np.array([[*s, *[""] * (length - len(s))] for s in seqs], dtype=object)
        kernel = (padded[:, None, :] == padded[None, :, :]).mean(-1)
        blocks.append((kernel, len(ref)))

    def statistic(assign) -> float:
        total = 0.0
        for (k, _), x in zip(blocks, assign):
            y = ~x
            kxx, kyy, kxy = k[np.ix_(x, x)], k[np.ix_(y, y)], k[np.ix_(x, y)]
            nx, ny = x.sum(), y.sum()
            total += ((kxx.sum() - np.trace(kxx)) / (nx * (nx - 1))
                      + (kyy.sum() - np.trace(kyy)) / (ny * (ny - 1)) - 2 * kxy.mean())  # fmt: skip
        return total

    return permutation_p(blocks, statistic, rng, permutations)


def anchors(data: dict, reference_url: str, candidate_url: str, rng) -> dict:
    stored = data["settings"]["reference_stored"]
    ref_dir = Path(stored) if stored else Path(data["out"])
    reference = answers_of(ref_dir / "reference")
    candidate = answers_of(Path(data["out"]) / "candidate")
    per_prompt = max(2, round(data["calls"]["candidate"] / len(DEFAULT_PROMPTS)))
    prompts = list(DEFAULT_PROMPTS)
    samples_ref = sample(reference_url, prompts, per_prompt)
    samples_cand = sample(candidate_url, prompts, per_prompt)
    return {
        "lpt_p": lpt_p(reference, candidate, rng),
        "mmd_p": mmd_p(samples_ref, samples_cand, rng),
        "mmd_samples_per_side": per_prompt * len(prompts),
    }


def row(name: str, data: dict, extra: dict) -> dict:
    found = {
        "variant": name,
        "verify": data["verdict"],
        "ref calls": data["calls"]["reference"] or f"{data['reference_calls_stored']} stored",
        "cand calls": data["calls"]["candidate"],
        "distance": f"{data['distance_nats']:.3g}",
        "x spread": f"{data['distance_x_spread']:.3g}" if data["distance_x_spread"] else "-",
        "floor": f"{data['floor_nats']:.3g}" if data["floor_nats"] is not None else "-",
        "top agrees": f"{data['top_token_agrees']:.0%}",
        "family": "other" if data["vocabulary"]["other_family"] else "same",
        "s": round(data["seconds"]),
    }
    if extra:
        found["LPT p"] = f"{extra['lpt_p']:.3g}" + (" *" if extra["lpt_p"] < ALPHA else "")
        found["MMD p"] = f"{extra['mmd_p']:.3g}" + (" *" if extra["mmd_p"] < ALPHA else "")
        found["MMD samples/side"] = extra["mmd_samples_per_side"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(["f32-2slots", *VARIANTS]))
    parser.add_argument("--self-runs", type=int, default=20)
    parser.add_argument("--no-anchors", action="store_true")
    args = parser.parse_args()
    from tabulate import tabulate

    rng = np.random.default_rng(20261207)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    rows, selves = [], []
    with (
        tempfile.TemporaryDirectory(prefix="detcheck-verify-") as tmp,
        serve(smollm2.f32(), slots=8, extra=EXTRA, alias="smol") as ref,
    ):
        tmp = Path(tmp)
        with serve(smollm2.f32(), slots=2, extra=EXTRA, alias="smol") as other:
            base = verify(ref, other, tmp / "base")
            extra = {} if args.no_anchors else anchors(base, ref, other, rng)
            if "f32-2slots" in names:
                rows.append(row("F32, 2 slots", base, extra))
                print(rows[-1], file=sys.stderr, flush=True)
        stored = base["out"]
        for name in names:
            if name not in VARIANTS:
                continue
            with serve(VARIANTS[name](), slots=8, extra=EXTRA, alias="smol") as candidate:
                data = verify(stored, candidate, tmp / name)
                extra = {} if args.no_anchors else anchors(data, ref, candidate, rng)
            rows.append(row(name, data, extra))
            print(rows[-1], file=sys.stderr, flush=True)
        for k in range(args.self_runs):
            data = verify(ref, ref, tmp / f"self{k}")
            extra = {} if args.no_anchors or k >= 5 else anchors(data, ref, ref, rng)
            selves.append((data, extra))
            said = ", ".join(f"{name} p={p:.3g}" for name, p in extra.items() if name != (
                "mmd_samples_per_side"))  # fmt: skip
            print(f"self {k}: {data['verdict']} p={data['p_value']:.3g} {said}", file=sys.stderr,
                  flush=True)  # fmt: skip
    print(tabulate(rows, headers="keys"))
    verdicts = [d["verdict"] for d, _ in selves]
    lpt = [e["lpt_p"] < ALPHA for _, e in selves if e]
    mmd = [e["mmd_p"] < ALPHA for _, e in selves if e]
    print(
        f"\nthe F32 reference against itself, {len(selves)} times: "
        + ", ".join(f"{v} {verdicts.count(v)}" for v in ("identical", "consistent", "differs"))
        + (
            f"; LPT called it different {sum(lpt)} of {len(lpt)}, MMD {sum(mmd)} of {len(mmd)}"
            if lpt
            else ""
        )  # fmt: skip
    )


if __name__ == "__main__":
    main()
