"""The runtime alone: greet the name in the input."""


def handle(data):
    return b"hello, " + data
