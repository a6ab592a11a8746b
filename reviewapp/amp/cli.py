"""CLI for crews, the AMP sandbox and the demo: thin commands over the services."""

from __future__ import annotations

import time

import click
from flask import Flask
from flask.cli import AppGroup

from ..extensions import db
from . import crews as services
from .demo import demo_command
from .sandbox import Sandbox

crews_cli = AppGroup("crews", help="Register the CrewAI AMP deployments reviewapp talks to.")


@crews_cli.command("add")
@click.argument("name")
@click.option("--url", "base_url", required=True, help="The deployment's base URL.")
@click.option("--token", default=None, help="Bearer token (prompted, hidden, when absent).")
def add_crew_command(name: str, base_url: str, token: str | None) -> None:
    """Register a crew; its token is stored encrypted."""
    if token is None:
        token = click.prompt("Bearer token", hide_input=True)
    try:
        crew = services.create_crew(name, base_url, token)
    except services.CrewError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Added crew {crew.name} ({crew.base_url}), token {crew.token_hint}.")


@crews_cli.command("list")
def list_crews_command() -> None:
    """List crews with their base URL and token hint."""
    rows = services.list_crews()
    if not rows:
        click.echo("No crews.")
        return
    for crew in rows:
        state = "TOKEN REFUSED" if crew.token_broken else "ok"
        click.echo(f"{crew.name:<24} {crew.base_url:<48} {crew.token_hint:<8} {state}")


@crews_cli.command("set-token")
@click.argument("name")
@click.option("--token", default=None, help="New Bearer token (prompted, hidden, when absent).")
def set_token_command(name: str, token: str | None) -> None:
    """Replace a crew's token (clears the "token refused" mark)."""
    crew = services.get_crew(name)
    if crew is None:
        raise click.ClickException(f"No crew named '{name}'.")
    if token is None:
        token = click.prompt("Bearer token", hide_input=True)
    try:
        services.update_crew(crew, token=token)
    except services.CrewError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Token of {crew.name} replaced ({crew.token_hint}).")


@crews_cli.command("remove")
@click.argument("name")
@click.option("--delete-history", is_flag=True,
              help="Also delete the crew's executions and recorded decisions.")
def remove_crew_command(name: str, delete_history: bool) -> None:
    """Remove a crew (refused while it has review history, unless --delete-history)."""
    crew = services.get_crew(name)
    if crew is None:
        raise click.ClickException(f"No crew named '{name}'.")
    try:
        services.remove_crew(crew, force=delete_history)
    except services.CrewError as exc:
        raise click.ClickException(f"{exc} Pass --delete-history to do so.") from exc
    db.session.commit()
    click.echo(f"Removed crew {name}.")


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5001, show_default=True, type=int, help="Port to listen on.")
def sandbox_command(host: str, port: int) -> None:
    """Run the local AMP sandbox (example crews that pause for human input)."""
    box = Sandbox()
    try:
        box.serve(host, port)
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port} ({exc}); pass --port.") from exc
    click.echo(f"AMP sandbox on {box.url} (faults: POST {box.url}/_sandbox/faults)")
    for name, token in box.crews.items():
        click.echo(f"  flask --app app crews add {name} --url {box.crew_url(name)} --token {token}")
    click.echo("Press Ctrl+C to stop.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        box.close()


def register(app: Flask) -> None:
    """Add the AMP commands (crews, sandbox, demo) to ``app.cli``."""
    app.cli.add_command(crews_cli)
    app.cli.add_command(sandbox_command)
    app.cli.add_command(demo_command)
