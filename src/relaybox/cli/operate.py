"""Commands that run things: migrate, enqueue, worker, demo."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import typer

from relaybox.cli.app import JsonOption, fail, globals_of, opened, out, print_json
from relaybox.errors import RelayboxError
from relaybox.store import open_store
from relaybox.store.migrations import available_migrations, migrate, schema_version


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)
    app.command("enqueue")(enqueue_command)
    app.command("worker")(worker_command)
    app.command("demo")(demo_command)


def migrate_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Create or upgrade the store's schema (safe to run again, and from several processes)."""
    g = globals_of(ctx)
    try:
        store = open_store(g.url(), run_migrations=False)
    except RelayboxError as error:
        raise fail(str(error)) from None
    try:
        applied = migrate(store)
        version = schema_version(store)
    finally:
        store.close()
    latest = available_migrations(store.dialect)[-1].version
    if as_json:
        print_json({"applied": [m.version for m in applied], "version": version})
        return
    for m in applied:
        out.print(f"applied {m.version:04d}_{m.name}")
    out.print(f"schema at version {version} (latest {latest})")


def enqueue_command(
    ctx: typer.Context,
    channel: Annotated[str, typer.Option(help="Channel name from relaybox.toml.")],
    thread: Annotated[str, typer.Option(help="Conversation thread id, e.g. chat-42.")],
    to: Annotated[str, typer.Option(help="Recipient address on the channel.")],
    part: Annotated[
        list[str] | None,
        typer.Option(help="One part of the reply; repeat in order. '-' reads one part from stdin."),
    ] = None,
    part_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--part-file",
            help="Read one part from this UTF-8 file (one trailing newline is dropped);"
            " repeat in order. Not together with --part.",
        ),
    ] = None,
    reply_key: Annotated[
        str | None, typer.Option(help="Idempotency key: the same key enqueues once.")
    ] = None,
    correlation_id: Annotated[str | None, typer.Option(help="Correlation id to carry.")] = None,
    resource: Annotated[
        str | None, typer.Option(help="Resource (user) id; defaults to the recipient.")
    ] = None,
    supersede: Annotated[
        bool, typer.Option(help="Cancel this thread's queued replies that have not started.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Store a reply of one or more parts; a worker delivers it."""
    from relaybox.outbox.enqueue import EnqueueUnit, build_request

    parts = _parts(part or [], part_file or [])
    with opened(ctx) as (store, config):
        request = build_request(
            config.channel(channel),
            thread_id=thread,
            recipient=to,
            parts=parts,
            resource_id=resource,
            reply_key=reply_key,
            correlation_id=correlation_id,
            supersede=supersede,
        )
        result = store.run_sync(EnqueueUnit(request))
    d = result.delivery
    if as_json:
        print_json(
            {"created": result.created, "superseded": list(result.superseded), **d.to_json()}
        )
        return
    verb = "enqueued" if result.created else "already enqueued as"
    out.print(
        f"{verb} delivery {d.id}: {d.part_count} part(s) to {d.recipient} on "
        f"{d.channel}/{d.thread_id} (status {d.status})"
    )
    for p in d.parts:
        out.print(f"  part {p.index + 1}  guid {p.guid}")
    if result.superseded:
        out.print(f"superseded: {', '.join(map(str, result.superseded))}")


def _parts(given: list[str], files: list[Path]) -> list[str]:
    """The reply's parts from --part (``-``: stdin) or --part-file, in order."""
    if given and files:
        raise fail("use either --part or --part-file, not both (their order would be ambiguous)")
    if not given and not files:
        raise fail("a reply needs at least one part: --part TEXT, --part - (stdin) or --part-file")
    if given.count("-") > 1:
        raise fail("--part - (stdin) can be given only once")
    if files:
        return [_read_part(path.read_bytes, str(path)) for path in files if _exists(path)]
    return [_read_part(sys.stdin.buffer.read, "stdin") if p == "-" else p for p in given]


def _exists(path: Path) -> bool:
    try:
        found = path.is_file()
    except OSError as error:  # a name too long for the filesystem, ...
        raise fail(f"--part-file: {error.strerror or error}") from None
    if not found:
        raise fail(f"--part-file {path}: no such file")
    return True


def _read_part(read: Callable[[], bytes], where: str) -> str:
    try:
        raw = read()
    except OSError as error:
        raise fail(f"cannot read part from {where}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(f"the part in {where} is not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text


def worker_command(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Deliveries in flight at once.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also log every claim and every part sent.")
    ] = False,
    turn_handler: Annotated[
        str | None,
        typer.Option(
            "--turn-handler",
            help="Resume turns a dead process left behind with this async function,"
            " 'package.module:function' (default: [turns] handler; none: no resume).",
        ),
    ] = None,
    log_format: Annotated[
        str, typer.Option(help="text (for people) or json (one JSON object per line).")
    ] = "text",
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info (default; -v means debug), warning or error."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve Prometheus metrics at :PORT/metrics."),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address /metrics listens on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    otel_exporter: Annotated[
        Literal["otlp", "console", "none"] | None,
        typer.Option(
            help="Export OpenTelemetry spans: otlp (OTLP/HTTP, configured by the OTEL_*"
            " environment), console (stderr) or none (default: [worker] otel_exporter, else"
            " none). Needs relaybox[otel].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Deliver queued replies until SIGTERM or Ctrl-C (then finish or release what it holds).

    The first Ctrl-C stops claiming and lets each delivery finish the part it is sending; a
    second Ctrl-C stops at once. Logs go to stderr, one line per decision (docs/observability.md).
    """
    from relaybox.client import Relaybox
    from relaybox.observability.logs import configure_logging
    from relaybox.turns.resume import load_handler, resume_service
    from relaybox.worker.metrics import WorkerMetrics

    level = log_level if log_level is not None else ("debug" if verbose else "info")
    try:
        configure_logging(log_format, level.lower())
    except RelayboxError as error:
        raise fail(str(error)) from None
    from relaybox.worker.worker import Worker

    with opened(ctx) as (store, config):
        exporter = otel_exporter or config.worker.otel_exporter
        spans = None
        if exporter != "none":  # only now is anything of OpenTelemetry's SDK imported
            from relaybox.observability.export import start_export

            spans = start_export(exporter)  # not installed: one `error:` line (ConfigError)
        metrics = None
        try:
            if metrics_port is not None:
                metrics = WorkerMetrics.serve(
                    metrics_port, metrics_host, config.worker.metrics_cache_seconds
                )
            worker = Worker(
                store,
                config,
                concurrency=concurrency,
                listeners=[] if metrics is None else [metrics.listener],
                metrics_url=None if metrics is None else metrics.url,
            )
            if metrics is not None:
                metrics.attach(worker)
            spec = turn_handler or config.turns.handler
            if spec:
                handler = load_handler(spec)  # a bad spec is one `error:` line (ConfigError)
                worker.services.add(resume_service(Relaybox(store, config), handler))
                out.print(f"resuming turns with {spec}", markup=False)
            where = "" if metrics is None else f"; metrics at {metrics.url}"
            if spans is not None:
                where += f"; spans to {spans.description}"
            ready = (
                f"worker {worker.worker_id} delivering on {', '.join(sorted(config.channels))}"
                f" from {store.connector.describe()}{where} (Ctrl-C to stop)"
            )

            def announce() -> None:
                # Only now: SIGTERM/SIGINT are handled (graceful stop) from here on, so a
                # supervisor (or a test) that waits for this line may signal at once.
                out.print(ready, markup=False)
                sys.stdout.flush()

            asyncio.run(worker.run(install_signal_handlers=True, on_ready=announce))
        finally:
            if metrics is not None:
                metrics.close()
            if spans is not None:
                spans.shutdown()  # the spans of the last sends are exported before exit


def demo_command(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option(help="Keep the demo's store for inspection.")] = True,
) -> None:
    """Tell the story: a 4-part reply, a worker SIGKILLed mid-reply, a restart that resumes."""
    from relaybox.demo import run_demo

    raise typer.Exit(code=run_demo(keep=keep))
