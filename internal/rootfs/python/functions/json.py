"""FunctionBench json_dumps_loads: parse the input document, serialise it
again (keys sorted) and parse the result."""

import hashlib
import json


def handle(data):
    doc = json.loads(data)
    out = json.dumps(doc, sort_keys=True, indent=1).encode()
    again = json.loads(out)
    n = len(again) if hasattr(again, "__len__") else 1
    return b"%d %d %s" % (n, len(out), hashlib.sha256(out).hexdigest().encode())
