"""The audit's checks, part of the vocabulary: one module per known cause of non-determinism,
each naming its control arm and its treatment arm (which differ in that one factor only), the
test that compares them, and what each verdict means for a user. `detcheck audit` finds them by
their files (an underscore keeps a module out) and sends each arm once, however many checks share
it; detcheck.analysis.audit holds the tests themselves.

A check module has: `RANK` (its place in the report), `TEST` ("differs": the treatment strays
from the control's modal value more than the control does; "concentrated": the control must
be more concentrated than the treatment, or the factor is ignored; "first_call"), `MEANING`
(holds, broken), `arms(sizes) -> (control, treatment)`, and optionally `NEEDS_SEED` and
`CANNOT_TELL` (why a "concentrated" test cannot tell when the treatment gives one answer) and
`NEEDS_BATCH` (it compares sharing a batch with not: --concurrency 1 cannot test it).

May import: detcheck.spec, detcheck.errors and detcheck.text only."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class Arm:
    """One arm: an ordinary run of `kind` ("flip": the first token's logprob is compared;
    "generate": the whole text) with these FlipOptions fields changed from the audit's own."""

    name: str  # its directory under the audit's, and its name in the JSON
    kind: str
    changes: dict = field(default_factory=dict)
    what: str = ""
    # its calls are about sharing a batch: only those sent while another request was in flight
    # count (429s that cut the concurrency to 1 leave it nothing to say)
    shares: bool = False


@dataclass(frozen=True)
class Sizes:
    """What the arms are built from: the audit's concurrency and the measured prompt."""

    concurrency: int
    prompt: str

    @property
    def background(self) -> int:
        return max(1, self.concurrency - 1)  # with the measured call, `concurrency` in flight


# the arms several checks share
WARMUP = Arm("warmup", "flip", {}, "the first call after the audit starts")
ALONE = Arm("alone", "flip", {}, "the request alone, concurrency 1")
GREEDY = Arm("greedy", "generate", {"temperature": 0.0}, "temperature 0")
SEED_PER_CALL = Arm(
    "seed_per_call", "generate", {"temperature": 1.0, "seed_per_call": True},
    "temperature 1, a seed per call",
)  # fmt: skip


def _load() -> dict[str, ModuleType]:
    found = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    return {m.__name__.rsplit(".", 1)[1]: m for m in sorted(found, key=lambda m: m.RANK)}


CHECKS: dict[str, ModuleType] = _load()


def arms_of(names, sizes: Sizes) -> dict[str, Arm]:
    """The arms the named checks need, each once, in the order the checks name them (the
    warm-up is not among them: it is sent before any arm)."""
    out: dict[str, Arm] = {}
    for name in names:
        for arm in CHECKS[name].arms(sizes):
            if arm.name != WARMUP.name:
                assert out.setdefault(arm.name, arm) == arm, f"two arms named {arm.name}"
    return out
