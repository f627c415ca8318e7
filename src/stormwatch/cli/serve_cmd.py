"""``stormwatch serve``: the web dashboard and JSON API (:mod:`stormwatch.web`) under uvicorn.

The server opens the store read-write and is its only writer while it runs (DuckDB lets one
process write or several read, not both): ingest into a served store goes through the server
(``POST /api/ingest``), or stop the server first. ``--read-only`` serves a store that nothing
writes to (a copy, an archive) without taking the write lock. See docs/dashboard.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from stormwatch.errors import StormwatchError
from stormwatch.store import default_db_path
from stormwatch.web.settings import DEFAULT_HOST, DEFAULT_PORT, TOKENS_ENV, WebSettings, tokens_from_env


def settings_from_options(db_path: str | None, host: str, port: int, read_only: bool, tokens_required: bool,
                          kb_files: tuple[str, ...], rules_file: str | None, payloads: str | None,
                          watch: float = 0.0) -> WebSettings:
    db = Path(db_path) if db_path else default_db_path()
    if read_only and not db.exists():
        raise click.ClickException(f"no store at {db}: ingest something first, or name another with --db")
    return WebSettings(db=db, host=host, port=port, api_tokens=tokens_from_env(), read_open=not tokens_required,
                       read_only=read_only, kb_paths=tuple(Path(k) for k in kb_files),
                       rules_path=Path(rules_file) if rules_file else None,
                       payloads=Path(payloads) if payloads else None, warm_cache=True,
                       watch_seconds=0.0 if read_only else watch)


@click.command("serve")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help=f"DuckDB store file [default: $STORMWATCH_DB or {default_db_path()}]")
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on (loopback by default; put a TLS proxy in front to expose it).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--read-only", is_flag=True, help="Open the store read-only (nothing can change it through the server).")
@click.option("--tokens-required", is_flag=True,
              help=f"Reading needs an API token too (tokens come from ${TOKENS_ENV}, comma-separated).")
@click.option("--kb", "kb_files", multiple=True, envvar="STORMWATCH_KB", type=click.Path(dir_okay=False),
              help="Operator knowledge-base file (repeatable) [default: $STORMWATCH_KB].")
@click.option("--rules", "rules_file", envvar="STORMWATCH_RULES", type=click.Path(dir_okay=False), default=None,
              help="Threat-level rules file [default: $STORMWATCH_RULES or the built-in rules].")
@click.option("--payloads", type=click.Path(file_okay=False), default=None,
              help="The sensor's payload directory (campaign names from YARA rules).")
@click.option("--watch", type=click.FloatRange(min=0), default=300.0, show_default=True, metavar="SECONDS",
              help="Record the threat level and run the notifications this often (the store is the server's "
                   "while it runs, so `stormwatch level` and `notify run` cannot); 0: off.")
def serve(db_path: str | None, host: str, port: int, read_only: bool, tokens_required: bool,
          kb_files: tuple[str, ...], rules_file: str | None, payloads: str | None, watch: float) -> None:
    """Serve the dashboard and the JSON API (OpenAPI at /docs) on HOST:PORT."""
    settings = settings_from_options(db_path, host, port, read_only, tokens_required, kb_files, rules_file, payloads,
                                     watch)
    shown = f"[{host}]" if ":" in host else host
    run_server(settings, f"stormwatch dashboard on http://{shown}:{port}/ (store {settings.db}"
                         f"{', read-only' if read_only else ''}); Ctrl-C stops it")


def run_server(settings: WebSettings, banner: str, *, log_level: str = "info") -> None:
    """Serve the app over ``settings`` under uvicorn until interrupted, after printing ``banner``."""
    import uvicorn

    from stormwatch.web.app import create_app

    try:
        app = create_app(settings)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(banner)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False)
