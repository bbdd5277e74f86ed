"""What the reference checks (test_reference.py, test_rwkv6.py, test_rwkv7.py) share: the
difference measure, RWKV-LM's L2Wrap extra gradient and the runner of a script's test_*
functions."""
import os
import time

import torch


def maxdiff(a, b):
    return (a - b).abs().max().item()


def l2wrap_extra(logits):
    """What L2Wrap adds to the logit gradient (grad_output 1): max_logit * 1e-4 / (B*T) at each
    row's argmax logit, for logits (B,T,V) with B*T = 6 as the checks use."""
    extra = torch.zeros_like(logits)
    mx, ids = logits.detach().max(-1, keepdim=True)
    extra.scatter_(-1, ids, mx * 1e-4 / 6)
    return extra


def run_tests(namespace, timed=False):
    """Runs every test_* function of namespace (a script's globals()) in order; with timed, prints
    each one's time when RWKV_TEST_TIMES is set."""
    tests = [v for k, v in list(namespace.items()) if k.startswith("test_")]
    for t in tests:
        t0 = time.time()
        t()
        if timed and os.environ.get("RWKV_TEST_TIMES"):
            print(f"  ({t.__name__}: {time.time() - t0:.2f} s)")
    print(f"all {len(tests)} tests passed")
