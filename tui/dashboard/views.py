"""The dashboard's views: which kinds it lists, what a person types to reach them, and the colour of
a status cell."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.registry import ResourceInfo, resolve


@dataclass(frozen=True)
class View:
    info: ResourceInfo
    aliases: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.info.plural


VIEWS: tuple[View, ...] = tuple(
    View(info, (info.plural, *info.short_names))
    for info in (
        resolve(word)
        for word in (
            "pods",
            "nodes",
            "rc",
            "services",
            "endpoints",
            "namespaces",
            "events",
            "configmaps",
            "secrets",
        )
    )
    if info is not None
)

#: What the command bar completes, first match wins: the plural names, then the short ones.
COMMANDS: tuple[str, ...] = (*(v.name for v in VIEWS), *(a for v in VIEWS for a in v.aliases[1:]))


def find_view(word: str) -> View | None:
    info = resolve(word)
    return next((v for v in VIEWS if info is not None and v.info is info), None)


def view_of(plural: str) -> View:
    view = find_view(plural)
    assert view is not None, plural
    return view


@dataclass(frozen=True)
class Scope:
    """What the table lists: a view in a namespace (None: all), narrowed on the server by selectors.
    Drilling down (node → its pods) and ``/-l`` push a scope; ``esc`` pops it."""

    view: View
    namespace: str | None
    label_selector: str | None = None
    field_selector: str | None = None
    #: Why it is narrowed, for the header: ``node n1``, ``rc frontend``, ``-l app=web``.
    reason: str = ""

    @property
    def title(self) -> str:
        return f"{self.view.name} ({self.reason})" if self.reason else self.view.name


GOOD = frozenset({"Running", "Ready", "Active", "Succeeded", "Completed", "Bound"})
WAITING = frozenset({"Pending", "ContainerCreating", "PodInitializing", "Terminating", "Unknown"})
BAD = frozenset(
    {"CrashLoopBackOff", "Failed", "NotReady", "Error", "ErrImagePull", "ImagePullBackOff", "OOMKilled"}
)


def status_class(text: str) -> str | None:
    """``ok``, ``waiting`` or ``bad`` for a status cell (``Ready,SchedulingDisabled`` by its first word)."""
    word = text.split(",", 1)[0].strip()
    if word in GOOD:
        return "ok"
    if word in WAITING:
        return "waiting"
    if word in BAD or word.startswith("Init:Error") or word.startswith("Init:CrashLoopBackOff"):
        return "bad"
    return None
