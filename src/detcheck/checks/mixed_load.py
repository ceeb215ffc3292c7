"""mixed_load: the request alone against the request with other users' traffic beside it:
background streams of unrelated prompts (no common prefix), of varied lengths."""

from detcheck.checks import ALONE, Arm

RANK = 2
TEST = "differs"
NEEDS_BATCH = True
MEANING = (
    "other users' prompts in the batch do not change the answer",
    "other users' traffic changes your answer: results depend on the server's load",
)


def arms(sizes):
    b = sizes.background
    return ALONE, Arm(
        "mixed", "flip", {"background_load": b},
        f"concurrency 1 + {b} streams of unrelated prompts", shares=True,
    )  # fmt: skip
