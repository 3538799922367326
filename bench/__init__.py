"""The tidings benchmark suite: `python -m bench [--quick]` from the repository root (see README.md)."""
