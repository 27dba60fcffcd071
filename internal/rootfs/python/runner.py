"""snapbpf's Python runner: the function process of a Python guest.

The agent (PID 1) starts it and speaks JSON lines over its stdin and stdout:
one request object per line, one reply object per line. Requests:

  {"op": "init", "function": NAME, "warmup": B64}
      import functions.NAME, run its init(), one warm-up call on the
      payload, collect and freeze the GC (what survives is in the snapshot)
  {"op": "invoke", "input": B64}      -> {"output": B64, "fn_ns": N}
  {"op": "reseed", "entropy": B64}    reseed random, numpy and torch
  {"op": "random", "n": N}            -> {"random": B64, "numpy": B64, "torch": B64}

Every reply has "ok"; a failed request has "ok": false and "error". The
same file runs on the host in a chroot of the same image to verify results.
"""

import base64
import gc
import hashlib
import importlib
import json
import os
import random
import sys
import time
import traceback

# Version of this runner and its functions; part of the image's recipe.
VERSION = 1

_fn = None


def _b64(b):
    return base64.b64encode(b).decode("ascii")


def _reseed(entropy):
    # A clone restored from a snapshot starts with the snapshot's generator
    # states: every clone would draw the same numbers without this.
    random.seed(entropy)
    np = sys.modules.get("numpy")
    if np is not None:
        seed = int.from_bytes(hashlib.sha256(entropy).digest()[:16], "little")
        np.random.seed(seed % (2**32))
        np.random.default_rng(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(int.from_bytes(entropy[:8], "little"))


def _handle(req):
    global _fn
    op = req.get("op")
    if op == "init":
        if _fn is not None:
            raise RuntimeError("function already initialised")
        mod = importlib.import_module("functions." + req["function"])
        start = time.perf_counter_ns()
        if hasattr(mod, "init"):
            mod.init()
        if "warmup" in req:
            mod.handle(base64.b64decode(req["warmup"]))
        _fn = mod
        gc.collect()
        # Keep the heap the snapshot holds out of later collections: a
        # collection would touch (and copy) every page of it in each clone.
        gc.freeze()
        return {"fn_ns": time.perf_counter_ns() - start}
    if op == "invoke":
        if _fn is None:
            raise RuntimeError("no function initialised")
        data = base64.b64decode(req.get("input", ""))
        start = time.perf_counter_ns()
        out = _fn.handle(data)
        return {"output": _b64(out), "fn_ns": time.perf_counter_ns() - start}
    if op == "reseed":
        e = base64.b64decode(req["entropy"])
        if len(e) < 16:
            raise ValueError("entropy: %d bytes, want at least 16" % len(e))
        _reseed(e)
        return {}
    if op == "random":
        n = int(req.get("n", 16))
        out = {"random": _b64(random.getrandbits(8 * n).to_bytes(n, "little"))}
        np = sys.modules.get("numpy")
        if np is not None:
            out["numpy"] = _b64(np.random.bytes(n))
        torch = sys.modules.get("torch")
        if torch is not None:
            out["torch"] = _b64(torch.randint(0, 256, (n,), dtype=torch.uint8).numpy().tobytes())
        return out
    raise ValueError("unknown op %r" % op)


def main():
    proto_in = sys.stdin.buffer
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    # Whatever a function prints goes to stderr, never into the protocol.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    proto_out.write(b'{"ok": true, "ready": true, "version": %d}\n' % VERSION)
    for line in proto_in:
        try:
            reply = _handle(json.loads(line))
            reply["ok"] = True
        except Exception as e:  # noqa: BLE001 (any failure is the reply)
            reply = {"ok": False, "error": "%s: %s" % (type(e).__name__, e),
                     "trace": traceback.format_exc(limit=5)}
        proto_out.write(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    main()
