"""logprobs_toggle: a greedy generation asked for without logprobs against the same with them.
Some servers take another code path (or sampler) when logprobs are asked for: the text moves."""

from detcheck.checks import GREEDY, Arm

RANK = 4
TEST = "differs"
MEANING = (
    "asking for logprobs does not change the generated text",
    "asking for logprobs changes the text: what you measure is not what users get",
)


def arms(sizes):
    plain = Arm("greedy_text", "generate", {"temperature": 0.0, "logprobs": False},
                "temperature 0, no logprobs")  # fmt: skip
    return plain, GREEDY
