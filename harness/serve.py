"""`dynamo-ref serve DIR`: browse past campaigns over HTTP, as Jepsen's `serve` does.

`/` is every campaign in DIR, newest first (rendered on each request, so a campaign still
running shows up); everything else is DIR's files as they are: each campaign's index, each
run's page, history and timelines. It listens on loopback unless told otherwise.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # http.server loads when the server starts, not when the CLI does
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "make_server", "serve_command"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _handler_class() -> type[SimpleHTTPRequestHandler]:
    from http.server import SimpleHTTPRequestHandler

    class _Handler(SimpleHTTPRequestHandler):
        root: Path

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] in ("/", "/index.html"):
                self._campaigns()
                return
            super().do_GET()

        def _campaigns(self) -> None:
            from harness.campaign import list_campaigns
            from harness.report import render_campaigns

            body = render_campaigns(f"Campaigns in {self.root}", list_campaigns(self.root))
            data = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # the base's name
            """Quiet: a browser's every request is not news."""

    return _Handler


def make_server(
    root: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> ThreadingHTTPServer:
    """A server for `root` (not started: call `serve_forever`, stop with `shutdown`)."""
    from http.server import ThreadingHTTPServer

    handler = type("Handler", (_handler_class(),), {"root": root.resolve()})
    server = ThreadingHTTPServer(
        (host, port), functools.partial(handler, directory=str(root.resolve()))
    )
    server.daemon_threads = True
    return server


@click.command("serve")
@click.argument(
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("campaign-out"),
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to listen on; loopback by default (0.0.0.0 shares the runs with the network).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
def serve_command(*, directory: Path, host: str, port: int) -> None:
    """Serve the campaigns in DIRECTORY (a campaign --out) with an index, newest first."""
    try:
        server = make_server(directory, host, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"serving {directory} at http://{bound_host!s}:{bound_port}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
