"""The ASGI app of `recon serve`: the JSON API, the page, and the page's Three.js files.

Imports FastAPI at module level: import this module only where the server is wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from recon.pipelines.web.jobs import KEEP_HOURS, Job, JobStore
from recon.pipelines.web.tasks import SERVE_TASKS
from recon.pipelines.web.uploads import (
    FILE_FIELD,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    UPLOAD_IDLE_S,
    UploadError,
    check_image,
    receive_upload,
)
from recon.pipelines.web.worker import QueueFull, WorkerPool

STATIC = Path(__file__).parent / "static"
NODE_MODULES = Path(__file__).parent / "frontend" / "node_modules"
THREE = NODE_MODULES / "three"  # the viewer (npm, pinned by frontend/package-lock.json)
SWAGGER_UI = NODE_MODULES / "swagger-ui-dist"  # /docs, served locally rather than from a CDN
DECODES_AT_ONCE = 2  # uploads decoded in full at the same time (check_image)
MEDIA_TYPES = {".glb": "model/gltf-binary", ".png": "image/png", ".json": "application/json"}
REMOVE_EVERY_S = 60.0  # how often the jobs past their keep time are looked for
# the page and its scripts are checked for a newer version at each use (a 304 when unchanged):
# after an upgrade a browser never runs cached old scripts beside new ones
REVALIDATE = {"Cache-Control": "no-cache"}


class RevalidatedFiles(StaticFiles):
    """StaticFiles whose answers carry REVALIDATE."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(REVALIDATE)
        return response


class HeldFileResponse(FileResponse):
    """A FileResponse that calls `release` once it is sent, or given up (the client gone)."""

    def __init__(self, *args, release, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.release = release

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


@dataclass
class ServeSettings:
    checkpoints: dict[str, Path]  # task -> checkpoint
    data: Path = Path("recon-serve")
    workers: int = 1  # worker processes; 0 queues jobs without running them
    queue_limit: int = 32  # jobs waiting for a worker
    client_limit: int = 0  # of those, one client's (an address); 0: no such limit
    device: str = "auto"
    cors_origins: list[str] = field(default_factory=list)
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS
    keep_hours: float = KEEP_HOURS  # finished jobs older than this are deleted; 0 keeps them
    upload_idle_s: float = UPLOAD_IDLE_S  # an upload that sends nothing for this long: 408


def job_view(job: Job, root: str) -> dict:
    """A job as the API shows it; URLs carry the app's root path (a reverse proxy's prefix)."""
    base = f"{root}/api/jobs/{job.id}"
    seconds = None if job.finished is None else round(job.finished - job.created, 3)
    return {
        "id": job.id,
        "task": job.task,
        "status": job.status,
        "progress": round(job.progress, 3),
        "stage": job.stage,
        "error": job.error,
        "source_name": job.source_name,
        "created": _iso(job.created),
        "finished": _iso(job.finished),
        "seconds": seconds,
        "status_url": base,
        "files": [
            {"role": role, "name": name, "url": f"{base}/files/{name}"}
            for role, name in job.files.items()
        ],
        "summary": job.summary,
    }


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def create_app(settings: ServeSettings):
    """The FastAPI app for these settings; worker processes start with the app's lifespan."""
    store = JobStore(settings.data)
    decoding = asyncio.Semaphore(DECODES_AT_ONCE)
    pool = WorkerPool(
        store,
        settings.checkpoints,
        settings.workers,
        settings.queue_limit,
        settings.device,
        settings.client_limit,
    )

    keep_s = settings.keep_hours * 3600.0

    async def remove_expired() -> None:
        """Delete the finished jobs past their keep time, every REMOVE_EVERY_S."""
        while True:
            await asyncio.sleep(REMOVE_EVERY_S)
            await run_in_threadpool(store.remove_finished, keep_s)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        queued = store.open()
        if keep_s:
            store.remove_finished(keep_s)
        pool.restore(queued)  # every one of them: they were accepted
        pool.start()
        remover = asyncio.create_task(remove_expired()) if keep_s else None
        try:
            yield
        except asyncio.CancelledError:
            # the server quit without a shutdown (uvicorn's forced exit, a second Ctrl+C) and
            # its event loop is closing: stop the workers here (the running job is failed) and
            # end quietly, where a cancelled lifespan is reported with a traceback
            pool.stop()
            return
        finally:
            if remover is not None:
                remover.cancel()
        await run_in_threadpool(pool.stop)

    app = FastAPI(
        title="recon serve",
        summary="Upload an image, follow the job, download the 3D result.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # no redirect for a trailing slash: Starlette's names this host without --root-path,
        # where the request was answered behind a proxy
        redirect_slashes=False,
    )
    app.state.store = store
    app.state.pool = pool

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(_request, exc: Exception):
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        return error(500, "internal server error")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        class JSONRefusalCORS(CORSMiddleware):
            """A refused preflight as every other error: one JSON line, not plain text."""

            def preflight_response(self, request_headers):
                response = super().preflight_response(request_headers)
                if response.status_code != 400:
                    return response
                refused = bytes(response.body).decode("utf-8", "replace")
                refused = refused[:1].lower() + refused[1:]  # "Disallowed CORS origin"
                kept = {
                    k: v
                    for k, v in response.headers.items()
                    if k.lower() not in ("content-length", "content-type")
                }
                return error(
                    400,
                    f"cross-origin request refused: {refused} (allowed origins: "
                    f"{', '.join(settings.cors_origins)})",
                    kept,
                )

        app.add_middleware(
            JSONRefusalCORS,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )

    def get_and_head(path: str, **options):
        """app.get, answering HEAD too (the GET's status and headers, no body) as HTTP expects of
        every resource that answers GET; HEAD stays out of the OpenAPI schema."""

        def register(endpoint):
            app.head(path, include_in_schema=False)(endpoint)
            return app.get(path, **options)(endpoint)

        return register

    @get_and_head("/healthz", tags=["service"])
    async def healthz():
        """Liveness: job counts by status, workers (and how many of their dispatchers run),
        waiting jobs, whether the viewer's files are installed; 503 when no dispatcher runs."""
        alive = pool.dispatchers()
        body = {
            "status": "ok" if alive == settings.workers else "degraded" if alive else "down",
            "workers": settings.workers,
            "workers_running": alive,
            "waiting": pool.waiting(),
            "queue_limit": settings.queue_limit,
            "client_limit": settings.client_limit,
            "jobs": store.counts(),
            "viewer_files": THREE.is_dir(),
        }
        return JSONResponse(body, 503 if settings.workers and not alive else 200)

    @get_and_head("/api/tasks", tags=["jobs"])
    async def tasks() -> list[dict]:
        """The tasks this server runs (those it has a checkpoint for)."""
        return [
            {"name": name, "title": SERVE_TASKS[name].title, "hint": SERVE_TASKS[name].hint}
            for name in settings.checkpoints
        ]

    @app.post(
        "/api/jobs",
        status_code=202,
        tags=["jobs"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": [FILE_FIELD, "task"],
                            "properties": {
                                FILE_FIELD: {"type": "string", "format": "binary"},
                                "task": {"type": "string", "enum": list(settings.checkpoints)},
                            },
                        }
                    }
                },
            }
        },
        responses={
            400: {"description": "malformed multipart body"},
            408: {"description": "the upload stalled (nothing arrived for a while)"},
            413: {"description": f"file over {settings.max_upload_bytes} bytes or too many pixels"},
            415: {"description": "not an image"},
            422: {"description": "unknown task or missing field"},
            429: {"description": "queue full, or this client's share of it; retry later"},
        },
    )
    async def submit(request: Request):
        """Upload an image (multipart field `image`) for a task (field `task`): 202 with the
        job's id and status URL."""
        from starlette.requests import ClientDisconnect

        # the client's address; behind a proxy that uvicorn trusts (--forwarded-allow-ips,
        # 127.0.0.1 by default) the one its X-Forwarded-For names
        client = request.client.host if request.client else None
        target = store.new_upload_path()
        try:
            upload = await receive_upload(
                request, target, settings.max_upload_bytes, settings.upload_idle_s
            )
            try:
                if upload.file is None:
                    got = f" (got {', '.join(map(repr, upload.other_files))})"
                    if FILE_FIELD in upload.fields:
                        got = " (it holds text: send the image as a file)"
                    elif not upload.other_files:
                        got = ""
                    raise UploadError(422, f"no file in the {FILE_FIELD!r} field{got}")
                task = upload.fields.get("task")
                served = ", ".join(settings.checkpoints)
                if task is None:
                    raise UploadError(422, f"no 'task' field (this server runs: {served})")
                if task not in settings.checkpoints:
                    raise UploadError(422, f"unknown task {task!r} (this server runs: {served})")
                refused = pool.refusal(client)  # before decoding: costs no memory
                if refused:
                    raise UploadError(429, refused)
                async with decoding:  # a few full decodes at a time, however many arrive
                    suffix, _, _ = await run_in_threadpool(check_image, target, settings.max_pixels)
                job = store.create(task, target, suffix, upload.filename or "")
            finally:
                target.unlink(missing_ok=True)
        except UploadError as rejected:
            retry = {"Retry-After": "5"} if rejected.status == 429 else None
            return error(rejected.status, rejected.message, retry)
        except ClientDisconnect:  # the user closed the page mid-upload; nothing is kept
            return error(400, "the client disconnected during the upload")
        except OSError as failure:  # the data folder full or gone
            return error(507, f"the server cannot store the upload ({failure.strerror or failure})")
        try:
            pool.submit(job.id, client)
        except QueueFull as refused:
            store.remove(job.id)
            return error(429, str(refused), {"Retry-After": "5"})
        view = job_view(job, request.scope.get("root_path", ""))
        return JSONResponse(view, 202, headers={"Location": view["status_url"]})

    @get_and_head("/api/jobs/{job_id}", tags=["jobs"])
    async def job_status(job_id: str, request: Request) -> dict:
        """A job's status (queued, running, done, failed), progress 0..1, one-line error, and
        its result files."""
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return job_view(job, request.scope.get("root_path", ""))

    @get_and_head("/api/jobs/{job_id}/files/{name}", tags=["jobs"])
    async def job_file(job_id: str, name: str):
        """One result file: viewer.glb for the viewer, the task's outputs, the render."""
        path = store.hold_file(job_id, name)
        if path is None:
            raise HTTPException(404, "no such file for this job")
        return HeldFileResponse(
            path,
            release=lambda: store.release_file(job_id),
            media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
            filename=f"{job_id[:8]}_{name}",
        )

    @get_and_head("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=REVALIDATE)

    @get_and_head("/docs", include_in_schema=False)
    async def docs():
        if not SWAGGER_UI.is_dir():
            raise HTTPException(404, f"{SWAGGER_UI.name} is not installed; see openapi.json")
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title="recon serve API",
            swagger_js_url="vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="static/favicon.svg",
        )

    app.mount("/static", RevalidatedFiles(directory=STATIC), name="static")
    for prefix, folder in (("three", THREE), ("swagger-ui", SWAGGER_UI)):
        if folder.is_dir():  # their versions change with an upgrade too (package-lock.json)
            app.mount(f"/vendor/{prefix}", RevalidatedFiles(directory=folder), name=prefix)
    return app
