"""serve and form-snippet."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, load_config, reports_errors

app = typer.Typer()


@app.command(epilog="Example: newsletter serve --port 8000")
@reports_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    trust_proxy: Annotated[
        str | None,
        typer.Option(
            metavar="IPS",
            help="Comma-separated addresses of your reverse proxy, whose X-Forwarded-For "
            "names the visitor (rate limits and the consent record use it). Default: none.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the public pages: signup, confirm, unsubscribe, archive, feed."""
    import uvicorn

    from newsletter.web import create_app

    settings = load_config(config)
    app = create_app(settings)
    typer.echo(f"Serving {settings.newsletter.name} on http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        server_header=False,
        # Without a proxy, X-Forwarded-For is whatever the visitor wants it to be.
        proxy_headers=bool(trust_proxy),
        forwarded_allow_ips=trust_proxy or "",
    )


@app.command("form-snippet", epilog="Example: newsletter form-snippet > signup.html")
@reports_errors
def form_snippet(config: ConfigOption = None) -> None:
    """Print an HTML signup form to paste into another website."""
    from newsletter.compose.render import environment

    settings = load_config(config)
    template = environment(settings.root).get_template("web/snippet.html.j2")
    typer.echo(
        template.render(
            newsletter=settings.newsletter,
            base_url=settings.newsletter.base_url.rstrip("/"),
            consent=settings.web.consent_text.replace("{name}", settings.newsletter.name),
        )
    )
