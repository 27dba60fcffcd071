"""Functions the runner serves: each module has handle(bytes) -> bytes and
may have init(). Inputs arrive with the request; outputs are small and
deterministic so the host can check them against a run of its own."""
