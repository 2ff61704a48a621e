"""``pea tui``: a k9s-like full-screen dashboard, driven by watch streams and never by polling.

Layout (one module per area)::

    app.py                 PeapodApp: the injected Client, the namespace, read-only, the clock
    screens/resources.py   ResourcesScreen: header, banner, the resource table, the command bar; scopes
                           (drill-down, label filter) and the keys on a row
    screens/describe.py    DescribeScreen, screens/yaml_view.py YamlScreen: one object, live
    screens/logs.py        LogScreen: a container's log, following, pausable, no line dropped
    screens/confirm.py, scale.py, namespaces.py, help.py: the modals
    shell.py               ``s``: an interactive shell in a pod, the UI suspended meanwhile
    widgets/               ClusterHeader, ResourceTable, CommandBar, the log view
    streams.py             TableStream: list-then-watch of one kind's server-side Table, resume and re-list
    views.py               the views (pods, rc, svc, ...), their aliases, scopes and the status colours
    messages.py            what the workers tell the UI: small dataclass Messages
    dashboard.tcss         the layout

Concurrency model: everything runs on Textual's asyncio loop. I/O happens only in workers, one per
watch stream: the resource view's ``TableStream`` (exclusive in its group, so switching view or
namespace cancels the old stream), and two Informers (nodes, pods) for the header's counts. Workers
never touch widgets; they post Messages, and the screen's handlers apply them. Each view stream carries
a serial number, so messages a cancelled stream had already queued are dropped.

A broken stream resumes from the last resourceVersion it saw, with exponential back-off; a 410 Gone
re-lists and replaces the rows. While a stream cannot reach the API server the screen shows a banner;
readiness (``/readyz``) is asked again each time the stream (re)connects.
"""

from __future__ import annotations

from .app import PeapodApp

__all__ = ["PeapodApp"]
