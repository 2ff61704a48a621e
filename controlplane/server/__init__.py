"""The API server: Kubernetes REST paths and watch streams over the store.

One module per concern: ``request`` (path → RequestInfo, body decoding), ``handlers`` (the verbs),
``watch`` and ``watchcache`` (streams and the one broadcaster), ``storage`` (typed store access),
``allocators`` (CAS-kept ranges), ``auth``, ``discovery``, ``errors`` (Status), ``app`` (Starlette) and
``controlplane`` (the process that runs it all).
"""
