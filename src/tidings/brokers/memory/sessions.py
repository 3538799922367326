"""The memory broker's connection state recovery: the sessions kept for clients that come back, and the
log of the packets sent meanwhile (the model is in :mod:`tidings.channels`; Socket.IO's in-memory
``SessionAwareAdapter`` does the same).

A packet's log offset is given in the sender's thread, before the packet is encoded (:func:`new_offset`),
and the packet is appended to the log on the event loop, in the order of delivery. Both the log and
the kept sessions are bounded: the log by ``recovery_max_packets`` and by age, the sessions by age and
by ``max_sessions``, the oldest going first.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from tidings.channels import KeptSession, RecoveryRule, Target
from tidings.message import Outgoing

# One counter for the process: a send routed through the memory brokers of several servers keeps the
# one offset it was encoded with in each of their logs. ``next`` on a count holds the GIL throughout.
_offsets = itertools.count(1)


def new_offset() -> str:
    """A log offset no other packet of this process has."""
    return str(next(_offsets))


class Entry(NamedTuple):
    """One packet of the log: ``outgoing``, sent to ``target`` ``name`` (leaving out ``session_id``;
    a session's: to ``session_id``), the ``number``-th appended, at ``time``."""

    number: int
    outgoing: Outgoing
    target: Target
    name: str
    session_id: str | None
    time: float


class MemorySessions:
    """Kept sessions by pid, and the packet log, for one memory broker."""

    def __init__(self, rule: RecoveryRule, max_sessions: int, clock: Callable[[], float] = time.monotonic):
        self.rule = rule
        self.max_sessions = max_sessions
        self.clock = clock
        self.log: deque[Entry] = deque()
        #: The number of each logged packet, by its offset.
        self.numbers: dict[str, int] = {}
        #: Kept sessions by pid, as (when kept, JSON), oldest first.
        self.kept: dict[str, tuple[float, bytes]] = {}
        self._appended = 0

    def append(self, outgoing: Outgoing, target: Target, name: str, session_id: str | None) -> None:
        """Log ``outgoing`` (which has its offset) as sent to ``target`` ``name``."""
        assert outgoing.log_offset is not None
        now = self.clock()
        self._expire(now)
        if len(self.log) >= self.rule.max_packets:
            self._drop_oldest()
        self._appended += 1
        self.log.append(Entry(self._appended, outgoing, target, name, session_id, now))
        self.numbers[outgoing.log_offset] = self._appended

    def _expire(self, now: float) -> None:
        horizon = now - self.rule.duration
        while self.log and self.log[0].time < horizon:
            self._drop_oldest()
        kept = self.kept
        while kept:
            pid = next(iter(kept))
            if kept[pid][0] >= horizon:
                break
            del kept[pid]

    def _drop_oldest(self) -> None:
        entry = self.log.popleft()
        offset = entry.outgoing.log_offset
        assert offset is not None
        del self.numbers[offset]

    def keep(self, pid: str, session: bytes) -> None:
        now = self.clock()
        self._expire(now)
        self.kept.pop(pid, None)  # kept anew: it goes to the end, with the newest
        while len(self.kept) >= self.max_sessions:
            del self.kept[next(iter(self.kept))]
        self.kept[pid] = (now, session)

    def take(self, pid: str, offset: str) -> KeptSession | None:
        self._expire(self.clock())
        kept = self.kept.pop(pid, None)
        if kept is None or offset not in self.numbers:
            return None
        return KeptSession.from_json(kept[1])

    def missed(self, session: KeptSession, offset: str) -> tuple[list[Outgoing], str] | None:
        number = self.numbers.get(offset)
        if number is None:
            return None
        log = self.log
        # The log's numbers run on without a gap from its oldest entry's.
        after = itertools.islice(log, number - log[0].number + 1, None)
        messages = [
            entry.outgoing
            for entry in after
            if session.addressed(entry.target, entry.name, entry.session_id, entry.outgoing.audience)
        ]
        last = log[-1].outgoing.log_offset
        assert last is not None
        return messages, last

    def newer(self, offset: str, than: str) -> bool:
        # An offset not in the log was given but not appended yet: the newest.
        return self.numbers.get(offset, self._appended + 1) > self.numbers.get(than, 0)
