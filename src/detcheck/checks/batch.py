"""batch: the request alone against the same request at concurrency K. Kernels that are not
batch-invariant reduce in another order when the batch is larger: the logprobs move."""

from detcheck.checks import ALONE, Arm

RANK = 1
TEST = "differs"
NEEDS_BATCH = True
MEANING = (
    "sharing a batch with copies of the request does not change the answer",
    "the answer depends on the batch: concurrency changes the logprobs (batch-variant kernels)",
)


def arms(sizes):
    k = sizes.concurrency
    return ALONE, Arm("batched", "flip", {"concurrency": k}, f"concurrency {k}", shares=True)
