"""temperature_zero: temperature 0 against temperature 1 with a seed per call. Greedy decoding
gives one answer; a server that treats 0 as a small positive temperature gives about as many as
at 1."""

from detcheck.checks import GREEDY, SEED_PER_CALL

RANK = 7
TEST = "concentrated"
NEEDS_SEED = True
CANNOT_TELL = "temperature 1 gave one completion too: the answer is too certain to tell"
MEANING = (
    "temperature 0 gives fewer completions than temperature 1",
    "temperature 0 varies about as much as temperature 1: it is not greedy decoding",
)


def arms(sizes):
    return GREEDY, SEED_PER_CALL
