"""peapod's control plane: API types, the store, the API server, the scheduler and the client.

Everything talks through the API server: components change state only by writing objects and react
only to watches. ``api`` defines the objects; ``store`` keeps them (kine-style log over SQLite);
``server`` serves Kubernetes REST paths and watch streams; ``scheduler`` binds pods to nodes; ``client``
is the one async client every other part (agent, controllers, ``pea``, the dashboard) uses.
"""
