"""The header: API server and its health, nodes Ready/total and pods by phase (cluster-wide), the
namespace and view shown, read-only."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static


class ClusterHeader(Static):
    DEFAULT_CSS = """
    ClusterHeader {
        height: 2;
        padding: 0 1;
        background: $panel;
    }
    """

    server: reactive[str] = reactive("")
    ready: reactive[bool | None] = reactive(None)
    nodes_ready: reactive[int] = reactive(0)
    nodes_total: reactive[int] = reactive(0)
    pod_phases: reactive[dict[str, int]] = reactive(dict, always_update=True)
    namespace: reactive[str | None] = reactive("default")
    readonly: reactive[bool] = reactive(False)
    view: reactive[str] = reactive("pods")

    def render(self) -> Text:
        text = Text()
        text.append("Server: ", style="bold")
        text.append(self.server + " ")
        if self.ready is None:
            text.append("…", style="dim")
        elif self.ready:
            text.append("Ready", style="bold green")
        else:
            text.append("Not Ready", style="bold red")
        text.append("   Nodes: ", style="bold")
        text.append(f"{self.nodes_ready}/{self.nodes_total}")
        text.append("   Pods: ", style="bold")
        phases = self.pod_phases
        text.append(" ".join(f"{phase} {phases[phase]}" for phase in sorted(phases)) or "0")
        text.append("\nNamespace: ", style="bold")
        text.append(self.namespace if self.namespace is not None else "all")
        text.append("   View: ", style="bold")
        text.append(self.view)
        if self.readonly:
            text.append("   read-only", style="bold yellow")
        return text
