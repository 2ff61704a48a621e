"""Container runtimes behind one protocol (``base``): ``podman`` for real pods, ``hollow`` for scale
simulation and fast controller tests (pods report Running without any container)."""
