"""The memory broker, tidings' default: one process; see :mod:`tidings.brokers.memory.broker`."""

from tidings.brokers.memory.broker import MemoryBroker

__all__ = ["MemoryBroker"]
