"""FunctionBench matmul (numpy): multiply two random n x n matrices. The
input is JSON {"n": N, "seed": S}."""

import json

import numpy as np


def handle(data):
    req = json.loads(data)
    n, seed = int(req["n"]), int(req["seed"])
    rng = np.random.default_rng(seed)
    a, b = rng.random((n, n)), rng.random((n, n))
    c = a @ b
    # Rounded: the guest's and the host's CPU may take different SIMD paths.
    return ("%d %.6g %.6g" % (n, c.trace(), c.sum())).encode()
