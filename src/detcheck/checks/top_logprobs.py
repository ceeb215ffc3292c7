"""top_logprobs: one top logprob against 20. The chosen token's logprob should not depend on
how many alternatives are listed beside it (a server that renormalises over them, or takes
another kernel, makes it move)."""

from detcheck.checks import ALONE, Arm

RANK = 5
TEST = "differs"
MEANING = (
    "asking for more top logprobs does not change the chosen token's logprob",
    "the chosen token's logprob depends on how many top logprobs are asked for",
)


def arms(sizes):
    return Arm("top1", "flip", {"top_logprobs": 1}, "top_logprobs 1"), ALONE
