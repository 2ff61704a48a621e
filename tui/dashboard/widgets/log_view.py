"""LogView: a Textual ``Log`` that takes a container's lines in batches, pauses and shows timestamps.

Design: every line the screen receives goes into ``pending`` first; a timer flushes ``pending`` into the
``Log`` at most once per frame (one ``write_lines`` call for the whole batch), so a container printing
thousands of lines a second costs a few widget calls a second, not one per line. Paused, the timer
leaves ``pending`` alone: the view neither appends nor scrolls, and resuming writes the whole backlog in
order. Nothing is ever discarded: there is no ``max_lines`` cap, so memory grows with the log (two
references per line: the entry and the ``Log``'s display string) and that is the deliberate price of
showing every line.

Each line is kept as an :class:`Entry` (its timestamp and its text) so that ``t`` can re-render the
whole view with or without the timestamps. A notice (the container ended, the pod is gone) is an entry
without a timestamp.
"""

from __future__ import annotations

from typing import NamedTuple

from textual.widgets import Log

__all__ = ["Entry", "LogView", "display_line"]

#: How long a received line may wait for the next flush (about one frame at 30 fps).
FLUSH_INTERVAL = 1 / 30
NOTICE_PREFIX = "» "

# str.splitlines, which Log.write_lines applies to every line, also breaks at these; a container line
# holding one must stay one line in the view.
_BREAKS = str.maketrans({c: " " for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


class Entry(NamedTuple):
    """One line of the log: its RFC 3339 time ("" for a notice) and its text, without the newline."""

    stamp: str
    text: str


def display_line(entry: Entry, timestamps: bool) -> str:
    """The entry as exactly one line of the ``Log``: a trailing CR (CRLF output) dropped, other line
    breaks blanked, and an empty line shown as one space (``write_lines`` would drop ``""``)."""
    text = entry.text.removesuffix("\r").translate(_BREAKS)
    if timestamps and entry.stamp:
        text = f"{entry.stamp} {text}"
    return text or " "


class LogView(Log):
    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        border: none;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=None, auto_scroll=True, highlight=False, id=id)
        #: Entries already written to the Log, in order.
        self.shown: list[Entry] = []
        #: Entries received but not written yet: waiting for the next flush, or for resume.
        self.pending: list[Entry] = []
        #: Lines of the container received since the last ``reset`` (notices are not counted).
        self.received = 0
        self.paused = False
        self.timestamps = False
        self._flush_due = False

    def reset(self) -> None:
        """Forget everything (another container): the view, the backlog, the counts and the pause."""
        self.paused = False
        self.auto_scroll = True
        self.shown.clear()
        self.pending.clear()
        self.received = 0
        self.clear()

    def receive(self, entries: list[Entry]) -> None:
        """Queue the container's lines for the next flush."""
        self.received += len(entries)
        self._queue(entries)

    def notice(self, text: str) -> None:
        """Queue a line of our own (shown in order with the container's, marked with ``»``)."""
        self._queue([Entry("", NOTICE_PREFIX + text)])

    def _queue(self, entries: list[Entry]) -> None:
        self.pending.extend(entries)
        if not self.paused and not self._flush_due:
            self._flush_due = True
            self.set_timer(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Write the whole backlog in one call (unless paused)."""
        self._flush_due = False
        if self.paused or not self.pending:
            return
        batch, self.pending = self.pending, []
        self.shown.extend(batch)
        self.write_lines([display_line(e, self.timestamps) for e in batch])

    def set_paused(self, paused: bool) -> None:
        """Pause: stop appending and scrolling. Resume: append the backlog and go to the end."""
        self.paused = paused
        self.auto_scroll = not paused
        if not paused:
            self.flush()
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def set_timestamps(self, timestamps: bool) -> None:
        """Re-render every shown line with or without its time, keeping the position at the end."""
        self.timestamps = timestamps
        at_end = self.is_vertical_scroll_end
        self.clear()
        self.write_lines([display_line(e, timestamps) for e in self.shown], scroll_end=at_end)
