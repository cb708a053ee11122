"""``animeface-seg serve``: the engine as an HTTP service (FastAPI on uvicorn), batched across requests.

``options.py`` holds the service's settings, ``limits.py`` the body limit, the token check and the error
answers, ``segment.py`` turns a body into a result and a result into an answer, ``batching.py`` runs
concurrent requests' images as shared network batches, ``metrics.py`` keeps and writes ``/metrics``,
``app.py`` is the FastAPI application and ``server.py`` runs it under uvicorn. Requires the ``serve`` extra (``fastapi``, ``uvicorn``).
"""
