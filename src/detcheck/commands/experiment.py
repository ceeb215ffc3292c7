"""`detcheck run`: every measurement of an experiment file, one summary line each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from detcheck import spec
from detcheck.commands.flip import flip_command
from detcheck.commands.options import FlipOptions
from detcheck.errors import DetcheckError

Log = Callable[[str], None]


def run_experiment(path: Path, out: str | Path, log: Log, progress: bool = False) -> list[dict]:
    """Every measurement of an experiment file; one summary dict each (`error` on failure)."""
    from detcheck.analysis.report import summary
    from detcheck.commands.experiment_file import load

    summaries = []
    for m in load(path):
        s = dict(m.settings)
        seed, labels = s.pop("seed", None), s.pop("labels", None)
        options = FlipOptions(
            **{k: v for k, v in s.items() if k in spec.PARAMS},
            seed=seed if seed is not False else None,
            no_seed=seed is False or None,
            labels=tuple(labels) if labels is not None else None,
            out=out,
            progress=progress,
            key_env=s.get("api_key_env", "OPENAI_API_KEY"),
            partition=True,
            measurement=m.name,
        )
        try:
            if "reference" in s:  # a verification against a reference
                summaries.append(_verify(m.name, s, options, log))
                continue
            report, run_path, _ = flip_command(options, log=log)
        except DetcheckError as exc:
            summaries.append({"name": m.name, "error": str(exc).splitlines()[0]})
            continue
        summaries.append({"name": m.name, "run_path": str(run_path), **summary(report)})
    return summaries


def _verify(name: str, s: dict, options, log: Log) -> dict:
    """One verification of an experiment file: its verdict, as `detcheck run` reports it."""
    from dataclasses import replace

    from detcheck.commands.verify import verify_command

    options = replace(options, partition=False, measurement=None)
    result = verify_command(
        options, log, reference=s["reference"], reference_model=s.get("reference_model"),
        reference_key_env=s.get("reference_key_env"),
    )  # fmt: skip
    return {
        "name": name,
        "verdict": result["verdict"],
        "p_value": result["p_value"],
        "distance_nats": result["distance_nats"],
        "moved_prompts": result["moved_prompts"],
        "prompts": result["prompts"],
        "run_path": result["out"],
    }


def summary_line(s: dict) -> str:
    if "error" in s:
        return f"{s['name']}: FAILED: {s['error']}"
    if "verdict" in s:
        return (
            f"{s['name']}: {s['verdict']} (p = {s['p_value']:.3g}, {s['moved_prompts']} of "
            f"{s['prompts']} prompts moved, distance {s['distance_nats']:.3g} nats) -> "
            f"{s['run_path']}"
        )
    fps = ", ".join(f"{k} {v:,}" for k, v in sorted(s["fingerprints"].items()))
    modal = f"modal {s['modal_pct']:.10f}% in {s['modal_share']:.1%}" if s["modal_pct"] else ""
    from detcheck.text import count

    return (
        f"{s['name']}: {count(s['n'], 'response')}, {s['distinct']:,} distinct, "
        f"{count(s['clusters'], 'cluster')} at {s['threshold']:g} {s['threshold_unit']}, "
        f"{modal}, Chao1 {s['chao1']:,.1f}; fingerprints {fps}; "
        f"{count(s['errors'], 'failed attempt')} -> {s['run_path']}"
    )
