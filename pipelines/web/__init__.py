"""`recon serve`: a web page and JSON API that run the image -> 3D predict tasks on uploads.

Entry points: `app.create_app(ServeSettings)` (the ASGI app), `tasks.SERVE_TASKS` (one entry per
served task), `worker.WorkerPool` (inference in worker processes). The API is described at
/docs (OpenAPI) and in the README's "recon serve" section; the page lives in static/.
"""
