"""`recon serve`: the upload page and JSON API over trained predict tasks."""

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import Device, Json, Quiet, Reporter, check_range, renamed
from recon.pipelines.web.jobs import KEEP_HOURS

SERVER = "Server"
SHUTDOWN_GRACE_S = 5  # at a stop: how long open requests may take to end before they are cut


def serve(
    checkpoint: Annotated[
        list[str],
        typer.Option(
            "-c",
            "--checkpoint",
            help="TASK=CKPT: serve TASK with a `recon train TASK` checkpoint; repeat per task.",
        ),
    ],
    host: Annotated[
        str,
        typer.Option(help="Address to bind (localhost only by default).", rich_help_panel=SERVER),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port, 1 to 65535.", rich_help_panel=SERVER)] = 8000,
    store: Annotated[
        Path,
        typer.Option(help="Folder for jobs and their files (the job store); kept across restarts."),
    ] = Path("recon-serve"),
    old_data: Annotated[Path | None, typer.Option("--data", hidden=True)] = None,
    keep_hours: Annotated[
        float,
        typer.Option(
            help="Delete finished jobs (done or failed) and their files this many hours after "
            "they end, checked at start and every minute; 0 keeps them for ever.",
            rich_help_panel=SERVER,
        ),
    ] = KEEP_HOURS,
    workers: Annotated[
        int, typer.Option(help="Inference worker processes, 1 to 64.", rich_help_panel=SERVER)
    ] = 1,
    queue_limit: Annotated[
        int,
        typer.Option(
            help="Jobs that may wait for a worker, 1 to 100000; more get HTTP 429.",
            rich_help_panel=SERVER,
        ),
    ] = 32,
    client_limit: Annotated[
        int,
        typer.Option(
            help="Of those, the jobs one client (an address) may have waiting, 0 to 100000; "
            "more get HTTP 429. 0: no limit of its own.",
            rich_help_panel=SERVER,
        ),
    ] = 0,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Allow cross-origin requests from this origin (scheme://host[:port]); "
            "repeatable. None by default; '*' is refused.",
            rich_help_panel=SERVER,
        ),
    ] = None,
    root_path: Annotated[
        str,
        typer.Option(
            help="URL prefix when served under a reverse proxy's sub-path, e.g. /recon.",
            rich_help_panel=SERVER,
        ),
    ] = "",
    device: Device = "auto",
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Serve a web page and JSON API that turn uploaded images into 3D shapes.

    Upload an image at http://HOST:PORT/, follow the job, turn the mesh in a Three.js viewer and
    download it. API: POST /api/jobs, GET /api/jobs/{id}, GET /api/jobs/{id}/files/{name},
    GET /api/tasks, GET /healthz; OpenAPI at /docs. Stops with Ctrl+C.

    Example: recon serve -c voxel=run/checkpoints/best.ckpt --port 8000
    """

    import uvicorn

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import check_outside_runs
    from recon.pipelines.web.app import THREE, ServeSettings, create_app
    from recon.pipelines.web.connections import header_timeout_protocol
    from recon.pipelines.web.jobs import check_data_folder, data_lock
    from recon.pipelines.web.tasks import check_checkpoints, parse_checkpoint_specs
    from recon.pipelines.web.urls import bind, check_bind, check_origins, check_root_path

    ui = Reporter(json_out, quiet)
    check_range("--port", port, 1, 65535)
    check_range("--workers", workers, 1, 64)
    check_range("--queue-limit", queue_limit, 1, 100_000)
    check_range("--client-limit", client_limit, 0, 100_000)
    check_range("--keep-hours", keep_hours, 0, 1_000_000)
    check_bind(host, port)
    origins = check_origins(cors_origin or [])
    root_path = check_root_path(root_path)
    data, flag = renamed("--data", "--store", old_data, store)
    data = data.expanduser().absolute()
    check_outside_runs(data)  # another run's --overwrite would delete the jobs
    checkpoints = parse_checkpoint_specs(checkpoint)
    if data.exists() and not data.is_dir():
        raise BadInput(f"{data}: {flag} must be a folder")
    check_data_folder(data)  # can be written, holds no one else's files
    # bound before the checkpoints are read (seconds) and anything is made: a busy port or an
    # address of another machine is one line at once
    listening = bind(host, port)
    try:
        check_checkpoints(checkpoints)
    except BaseException:
        listening.close()
        raise
    with data_lock(data):  # one server per job store: held while it serves
        app = create_app(
            ServeSettings(
                checkpoints,
                data,
                workers,
                queue_limit,
                client_limit,
                device,
                origins,
                keep_hours=keep_hours,
            )
        )
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        if not THREE.is_dir():
            ui.info(f"warning: {THREE} is missing (run `make setup`): the page has no 3D viewer")
        if host not in ("127.0.0.1", "localhost", "::1"):
            ui.info(
                f"warning: listening on {host}: anyone who reaches this port can upload (no login)"
            )
        ui.info(f"recon serve: {url} (tasks: {', '.join(checkpoints)}; jobs in {data})")
        ui.result({"url": url, "data": str(data), "tasks": list(checkpoints), "workers": workers})
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            root_path=root_path,
            log_level="warning" if quiet else "info",
            access_log=not quiet,
            log_config=_log_config(),
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            http=header_timeout_protocol(),  # uvicorn has no limit on slow request headers
        )
        _server(config, app.state.pool).run(sockets=[listening])


def _server(config, pool):
    """A uvicorn server that stops the jobs as soon as a stop begins. uvicorn runs the app's own
    shutdown (which stops the workers) only once every request has ended, which a client that
    stalls mid-upload put off for ever while the queued jobs went on running: requests now get
    SHUTDOWN_GRACE_S, and no job starts meanwhile (the running one fails, queued ones stay)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            pool.halt()
            await super().shutdown(sockets)

    return Server(config)


def _log_config() -> dict:
    """uvicorn's logging with its access lines on stderr (its default is stdout), so stdout holds
    only the command's result (the --json object), and without the tracebacks of work a forced
    exit cancels (_CutShort)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config.setdefault("filters", {})["cut_short"] = {"()": _CutShort}
    config["handlers"]["default"].setdefault("filters", []).append("cut_short")
    return config


class _CutShort:
    """A logging filter for uvicorn's own lines: a second Ctrl+C while the server shuts down
    (waiting for an upload to end, say) makes uvicorn quit at once, and the requests still
    open are cancelled as its event loop closes, each reported as an error with a traceback.
    Those reports are dropped: the command ends with its one line, "interrupted"."""

    def filter(self, record) -> bool:
        import asyncio

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)
