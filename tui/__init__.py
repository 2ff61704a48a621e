"""Everything a person types at a terminal: the ``pea`` command (``cli``) and, later, the dashboard."""
