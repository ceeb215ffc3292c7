"""shared_prefix: the request alone against the request beside background streams that begin
with its prompt's first half and go on differently (a prefix cache hit, a shared batch)."""

from detcheck.checks import ALONE, Arm

RANK = 3
TEST = "differs"
NEEDS_BATCH = True
MEANING = (
    "requests sharing the prompt's start do not change the answer",
    "requests sharing your prompt's prefix change the answer (prefix caching or batching)",
)


def arms(sizes):
    b, half = sizes.background, sizes.prompt[: len(sizes.prompt) // 2]
    return ALONE, Arm(
        "prefixed", "flip", {"background_load": b, "background_prefix": half},
        f"concurrency 1 + {b} streams sharing the prompt's first half", shares=True,
    )  # fmt: skip
