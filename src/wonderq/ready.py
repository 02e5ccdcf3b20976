"""The orders in which READY messages go out: by priority then id (`PriorityReady`, every standard queue), or
by id within each message group, one group at a time while it has a message leased (`GroupReady`, FIFO queues).

Both hold message ids only, and both hold stale entries (an id whose message has left READY by a purge, a move
or a drop); callers check each id they get against the message. Pure, like the core that owns them.
"""

from __future__ import annotations

import heapq


class PriorityReady:
    """READY message ids in (priority, id) order, without a tuple per message: a heap of ids per priority, and
    a heap of the priorities in use (most queues use one). Entries of messages that left READY by purge stay
    until popped; callers check the message's state."""

    __slots__ = ("_by_priority", "_priorities")

    def __init__(self) -> None:
        self._by_priority: dict[int, list[str]] = {}
        self._priorities: list[int] = []

    def push(self, priority: int, message_id: str) -> None:
        ids = self._by_priority.get(priority)
        if ids is None:
            self._by_priority[priority] = [message_id]
            heapq.heappush(self._priorities, priority)
        else:
            heapq.heappush(ids, message_id)

    def peek(self) -> str | None:
        while self._priorities:
            ids = self._by_priority[self._priorities[0]]
            if ids:
                return ids[0]
            del self._by_priority[heapq.heappop(self._priorities)]
        return None

    def pop(self) -> str | None:
        if self.peek() is None:
            return None
        return heapq.heappop(self._by_priority[self._priorities[0]])

    def clear(self) -> None:
        self._by_priority.clear()
        self._priorities.clear()

    def append_in_order(self, priority: int, message_id: str) -> None:
        """Add an id larger than every id added so far (as when loading in id order): each id list stays a
        valid heap without a sift. Call `reorder` once after the last one."""
        ids = self._by_priority.get(priority)
        if ids is None:
            self._by_priority[priority] = [message_id]
        else:
            ids.append(message_id)

    def reorder(self) -> None:
        self._priorities = list(self._by_priority)
        heapq.heapify(self._priorities)


class GroupReady:
    """READY message ids of a FIFO queue: a heap of ids per message group, and a heap of (head id, group) of the
    groups that may deliver now. A group with a leased message delivers nothing more until no message of it is
    leased, so each group's messages go out one batch at a time, in send order."""

    __slots__ = ("_groups", "_leased", "_open")

    def __init__(self) -> None:
        self._groups: dict[str, list[str]] = {}  # group -> heap of its READY ids
        self._open: list[tuple[str, str]] = []  # heap of (head id, group); entries may be stale
        self._leased: dict[str, int] = {}  # group -> how many of its messages are leased (absent: none)

    def push(self, message_id: str, group: str) -> None:
        ids = self._groups.get(group)
        if ids is None:
            ids = self._groups[group] = [message_id]
        else:
            heapq.heappush(ids, message_id)
        if ids[0] == message_id and group not in self._leased:
            heapq.heappush(self._open, (message_id, group))

    def lease(self, group: str) -> None:
        self._leased[group] = self._leased.get(group, 0) + 1

    def unlease(self, group: str) -> None:
        left = self._leased[group] - 1
        if left:
            self._leased[group] = left
            return
        del self._leased[group]
        ids = self._groups.get(group)
        if ids:
            heapq.heappush(self._open, (ids[0], group))

    def blocked(self, group: str) -> bool:
        return group in self._leased

    def open_group(self) -> str | None:
        """The group, among those with no message leased, whose next message is the oldest; None if none."""
        while self._open:
            head, group = self._open[0]
            ids = self._groups.get(group)
            if group in self._leased or not ids:
                heapq.heappop(self._open)  # blocked (unlease will reopen it) or empty (a push will)
            elif ids[0] != head:
                heapq.heapreplace(self._open, (ids[0], group))  # its head changed since
            else:
                return group
        return None

    def pop(self, group: str) -> str | None:
        """The next id of `group`, removed; None when the group has no READY id left."""
        ids = self._groups.get(group)
        if not ids:
            return None
        message_id = heapq.heappop(ids)
        if not ids:
            del self._groups[group]
        return message_id

    def peek(self, group: str) -> str | None:
        ids = self._groups.get(group)
        return ids[0] if ids else None

    def clear(self) -> None:
        """Forget every id and every lease (a purge)."""
        self._groups.clear()
        self._open.clear()
        self._leased.clear()

    def append_in_order(self, message_id: str, group: str) -> None:
        """Add an id larger than every id added so far (as when loading in id order). Call `reorder` once after
        the last one."""
        ids = self._groups.get(group)
        if ids is None:
            self._groups[group] = [message_id]
        else:
            ids.append(message_id)

    def reorder(self) -> None:
        self._open = [(ids[0], group) for group, ids in self._groups.items() if group not in self._leased]
        heapq.heapify(self._open)
