"""FunctionBench pyaes: AES-128-CTR encrypt then decrypt the input message."""

import hashlib

import pyaes

KEY = bytes(range(16))


def handle(data):
    enc = pyaes.AESModeOfOperationCTR(KEY, pyaes.Counter(1)).encrypt(data)
    dec = pyaes.AESModeOfOperationCTR(KEY, pyaes.Counter(1)).decrypt(enc)
    if dec != data:
        raise ValueError("decryption did not give the message back")
    return b"%d %s" % (len(enc), hashlib.sha256(enc).hexdigest().encode())
