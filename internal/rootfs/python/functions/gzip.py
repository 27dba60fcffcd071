"""FunctionBench gzip_compression: compress the input, decompress it and
check the round trip."""

import gzip
import hashlib


def handle(data):
    z = gzip.compress(data, compresslevel=6, mtime=0)
    if gzip.decompress(z) != data:
        raise ValueError("gzip round trip changed the data")
    return b"%d %d %s" % (len(data), len(z), hashlib.sha256(z).hexdigest().encode())
