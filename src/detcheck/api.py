"""The Python API: what the commands do, as functions returning objects.

    import detcheck

    result = detcheck.flip(n=200, base_url="http://localhost:8080/v1", model="local")
    result.report.distinct, result.run_path
    report = detcheck.analyze(["runs/"])          # a Report: report.clusters, report.modal, ...
    detcheck.compare("runs/baseline", "runs/today").drift

The parameters are the commands' own (one definition, `detcheck.spec`), by their Python names.
Every function works from plain code and from inside a running event loop (a notebook): there
the measurement runs in a worker thread. Errors are the CLI's: `detcheck.DetcheckError` and its
subclasses (`UsageError`, `DataError`, `EndpointError`, `StorageError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from detcheck import spec
from detcheck.errors import UsageError

T = TypeVar("T")
PathLike = str | Path


class Report(Mapping):
    """A report, as `--json` prints it, with its keys as attributes: `report.distinct`,
    `report.clusters`, `report.modal`, `report.headline` ... `to_dict()` is the `--json` object;
    `to_pandas()` has one row per distinct value (flip reports; needs pandas)."""

    def __init__(self, data: dict):
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not a report key (and _data itself while unpickling)
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"the report has no {name!r}") from None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._data]

    def __repr__(self) -> str:
        return f"<detcheck.Report: {self._data.get('headline', '')}>"

    def to_dict(self) -> dict:
        import copy

        return copy.deepcopy(self._data)

    def text(self) -> str:
        """The report as the terminal shows it."""
        from detcheck.render.text import render_text

        return render_text(self._data)

    def to_pandas(self):
        """One row per distinct value: its probability (%), logprob, calls, cluster, and calls
        per fingerprint (flip reports; a generate report has one row per completion)."""
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("to_pandas() needs pandas: pip install pandas") from None
        if self._data.get("kind") == "generate":
            return pd.DataFrame(self._data.get("completions") or [])
        rows = [
            {
                "prob_pct": v["prob_pct"],
                "logprob": v["logprob"],
                "count": v["count"],
                "cluster": i,
                **{f"fingerprint:{fp}": c for fp, c in v["fingerprints"].items()},
            }
            for i, cluster in enumerate(self._data["clusters"])
            for v in cluster["values"]
        ]
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:  # a notebook shows the page detcheck report writes
        from detcheck.render.html import report_body

        return report_body(self._data)


@dataclass(frozen=True)
class RunResult:
    """A measurement: its report, where the run was written, and whether it was interrupted."""

    report: Report
    run_path: Path | str
    interrupted: bool = False


@dataclass(frozen=True)
class GenerateResult:
    report: Report
    run_paths: list[Path | str]
    interrupted: bool = False


@dataclass(frozen=True)
class CompareResult:
    """`drift`: a finding in `fail_on` failed. `findings`: every finding. `to_dict()` is the
    `compare --json` object; `text` the report as the terminal shows it."""

    drift: bool
    findings: list[dict]
    text: str
    data: dict

    def to_dict(self) -> dict:
        import copy

        return copy.deepcopy(self.data)


def _in_loop_safe(func: Callable[[], T]) -> T:
    """Run `func` here, or, inside a running event loop (a notebook cell), in a worker thread:
    the measurement runs its own loop, and a loop cannot be started inside another."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return func()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="detcheck") as pool:
        return pool.submit(func).result()


def _options(params: dict, kind: str, **extra):
    from detcheck.commands import FlipOptions

    unknown = sorted(set(params) - set(spec.PARAMS))
    if unknown:
        raise UsageError(
            f"unknown parameter {unknown[0]!r}; detcheck takes: {', '.join(spec.PARAMS)}"
        )
    if isinstance(params.get("labels"), str):
        params["labels"] = spec.parse_labels(params["labels"])
    elif params.get("labels") is not None:
        params["labels"] = tuple(params["labels"])
    if isinstance(params.get("thresholds"), int | float):
        params["thresholds"] = [params["thresholds"]]
    return FlipOptions(**params, kind=kind, **extra)


def _quiet(_message: str) -> None:
    pass


def flip(
    *, progress: bool = False, log: Callable[[str], None] | None = None, **params
) -> RunResult:
    """`detcheck flip`: N identical single-token requests, stored, analysed. Parameters by their
    Python names (`n`, `model`, `base_url`, `concurrency`, `replay`, `out`, `max_cost`, ...;
    see `detcheck.spec.PARAMS`). `log` receives the notes the command prints on stderr."""
    options = _options(params, "flip", progress=progress)
    from detcheck.commands import flip_command

    report, run_path, outcome = _in_loop_safe(lambda: flip_command(options, log or _quiet))
    if run_path is None:  # dry_run: the plan
        return RunResult(Report(report), "", False)
    return RunResult(Report(report), run_path, outcome.interrupted)


def generate(
    *,
    prompts: PathLike | None = None,
    answer_regex: str | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    **params,
) -> GenerateResult:
    """`detcheck generate`: whole generations, how many different completions came back and
    where they part. `prompts`: a JSONL file of prompts, one run each."""
    options = _options(params, "generate", progress=progress, answer_regex=answer_regex)
    from detcheck.commands import generate_command

    prompts_path = Path(prompts) if prompts is not None else None
    report, paths, interrupted = _in_loop_safe(
        lambda: generate_command(options, prompts_path, log or _quiet)
    )
    return GenerateResult(Report(report), list(paths), bool(interrupted))


def audit(
    *,
    checks: str | Sequence[str] | None = None,
    skip: str | Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    **params,
) -> dict:
    """`detcheck audit`: which known cause breaks determinism on the endpoint, each check a
    control arm against a treatment. Returns what `--json` prints: `checks` (each `{name,
    verdict, ...}`), `drift`, `arms`, `out`; a dry run (`dry_run=True`), what it would send.
    `checks` / `skip`: the checks to run or leave out (names, or a comma-separated text)."""
    from detcheck.commands.audit import audit_command, choose

    def text(value):
        return value if value is None or isinstance(value, str) else ",".join(value)

    dry_run = bool(params.pop("dry_run", False))
    options = _options(params, "flip", progress=False, dry_run=dry_run)
    chosen = choose(text(checks), text(skip))
    return _in_loop_safe(lambda: audit_command(options, log or _quiet, checks=chosen))


def verify(
    *,
    reference: str | PathLike,
    reference_model: str | None = None,
    reference_key_env: str | None = None,
    prompts: PathLike | None = None,
    alpha: float = 0.01,
    key_env: str = "OPENAI_API_KEY",
    log: Callable[[str], None] | None = None,
    **params,
) -> dict:
    """`detcheck verify`: is the endpoint (`base_url`, `model`...) serving the reference's model?
    `reference` is a base URL or the directory an earlier verification wrote. Returns what
    `--json` prints: `verdict` ("identical", "consistent" or "differs"), `calls`, `per_prompt`,
    the distance, the floor; a dry run (`dry_run=True`), what it would send."""
    from detcheck.commands.verify import verify_command

    dry_run = bool(params.pop("dry_run", False))
    options = _options(params, "flip", progress=False, dry_run=dry_run, key_env=key_env)
    return _in_loop_safe(
        lambda: verify_command(
            options, log or _quiet, reference=str(reference), reference_model=reference_model,
            reference_key_env=reference_key_env,
            prompts_path=Path(prompts) if prompts is not None else None, alpha=alpha,
        )
    )  # fmt: skip


def analyze(
    paths: PathLike | Sequence[PathLike],
    *,
    thresholds: float | Sequence[float] | None = None,
    token: str | None = None,
    label_mass: bool = False,
    space: str = "pct",
    answer_regex: str | None = None,
    allow_mixed: bool = False,
) -> Report:
    """`detcheck analyze`: the report of stored runs (a run, a directory of runs, a URI, or a
    list of them)."""
    from detcheck.analysis.report import report_of
    from detcheck.store import read_runs

    runs = read_runs(_paths(paths))
    data = report_of(
        runs,
        _thresholds(thresholds),
        token=token,
        label_mass=label_mass,
        space=space,
        answer_regex=answer_regex,
        allow_mixed=allow_mixed,
    )
    return Report(data)


def compare(
    baseline: PathLike,
    candidate: PathLike,
    *,
    thresholds: float | Sequence[float] | None = None,
    token: str | None = None,
    fail_on: str | Sequence[str] = "clusters,shares,modal,fingerprints,flips",
    alpha: float = 0.001,
    allow_setup_change: bool = False,
) -> CompareResult:
    """`detcheck compare`: did the candidate drift from the baseline?"""
    from detcheck.commands import compare_command

    kinds = fail_on if isinstance(fail_on, str) else ",".join(fail_on)
    text, data, drifted = compare_command(
        str(baseline),
        str(candidate),
        thresholds=_thresholds(thresholds),
        token=token,
        fail_on=kinds,
        alpha=alpha,
        warn=_quiet,
        allow_setup_change=allow_setup_change,
        step_summary=False,
    )
    return CompareResult(bool(drifted), list(data.get("findings") or []), text, data)


def _paths(paths) -> list[str]:
    if isinstance(paths, str | Path):
        return [str(paths)]
    return [str(p) for p in paths]


def _thresholds(thresholds) -> list[float]:
    if thresholds is None:
        return list(spec.default("thresholds"))
    if isinstance(thresholds, int | float):
        return [float(thresholds)]
    return [float(t) for t in thresholds]
