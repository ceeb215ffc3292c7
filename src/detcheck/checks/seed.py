"""seed: at temperature 1, one fixed seed against a seed per call. An honoured seed repeats
its sample: the fixed arm must be more concentrated than the varied one."""

from detcheck.checks import SEED_PER_CALL, Arm

RANK = 6
TEST = "concentrated"
NEEDS_SEED = True
CANNOT_TELL = (
    "a seed per call gave one completion too: the answer is too certain at temperature 1 to "
    "tell (or the temperature is ignored)"
)
MEANING = (
    "a fixed seed gives fewer completions than a seed per call: the seed is honoured",
    "the seed makes no difference: it is ignored (or the sampling is not seeded)",
)


def arms(sizes):
    return Arm(
        "one_seed", "generate", {"temperature": 1.0}, "temperature 1, one seed"
    ), SEED_PER_CALL
