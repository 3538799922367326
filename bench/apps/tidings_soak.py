"""tidings side of the soak (bench/soak.py): channels soak-* keep a history, clients subscribe with
the built-in ``subscribe`` event and recover with ``since`` after their worker dies."""

import tidings

# Every client comes from 127.0.0.1: the per-address session limits (made for a hostile client, see
# docs/server.md) are lifted to the process's own.
app = tidings.Server(
    history=[("^soak-", 10_000, 3600)],
    max_sessions_per_address=100_000,
    session_burst_per_address=100_000,
    session_rate_per_address=100_000,
)
