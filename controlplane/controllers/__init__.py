"""Controllers: level-based, idempotent reconcilers fed by informers through a work queue.

Event handlers only enqueue keys; workers call ``sync(key)``, which reads the informer cache, compares
with what should be, and writes through the client. ``workqueue`` is the shared queue.
"""
