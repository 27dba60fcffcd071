"""FunctionBench linpack (numpy): solve a random dense n x n system and
check the residual. The input is JSON {"n": N, "seed": S}."""

import json

import numpy as np


def handle(data):
    req = json.loads(data)
    n, seed = int(req["n"]), int(req["seed"])
    rng = np.random.default_rng(seed)
    a, b = rng.random((n, n)), rng.random(n)
    x = np.linalg.solve(a, b)
    resid = np.linalg.norm(a @ x - b) / (np.linalg.norm(a) * np.linalg.norm(x))
    if resid > 1e-9:
        raise ValueError("residual %g too large" % resid)
    return ("%d %.5g" % (n, x.sum())).encode()
