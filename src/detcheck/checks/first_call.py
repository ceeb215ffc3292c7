"""first_call: the first call after the audit starts (a cold cache, a lazy allocation, a
kernel tuned on first use) against the calls after it. It is sent before any other arm and
is in no other one."""

from detcheck.checks import ALONE, WARMUP

RANK = 8
TEST = "first_call"
MEANING = (
    "the first call after a start gives what later calls give",
    "the first call differs (a cold cache or warm-up): discard it, or warm up before measuring",
)


def arms(sizes):
    return WARMUP, ALONE
