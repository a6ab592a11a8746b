"""Thin CLI commands over the same services the views use."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from .admin import services as accounts
from .extensions import db
from .models import Role

users_cli = AppGroup("users", help="Manage reviewer, lead and admin accounts.")


@users_cli.command("create")
@click.argument("username")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), default=Role.REVIEWER.value,
    show_default=True, help="The account's role.",
)
@click.option("--password", default=None, help="Initial password (prompted when absent).")
def create_user_command(username: str, role: str, password: str | None) -> None:
    """Create an account with a role."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user, _ = accounts.create_user(username, Role(role), password)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Created {user.username} ({user.role.value}).")


@users_cli.command("list")
def list_users_command() -> None:
    """List accounts with their role and state."""
    rows = accounts.list_users()
    if not rows:
        click.echo("No accounts.")
        return
    for user in rows:
        state = "active" if user.active else "deactivated"
        click.echo(f"{user.username:<32} {user.role.value:<9} {state}")


@users_cli.command("deactivate")
@click.argument("username")
def deactivate_user_command(username: str) -> None:
    """Deactivate an account and end its sessions."""
    from .auth.services import get_by_username

    user = get_by_username(username)
    if user is None:
        raise click.ClickException(f"No account named '{username}'.")
    accounts.set_active(user, False)
    db.session.commit()
    click.echo(f"Deactivated {user.username}; their sessions were ended.")


def register_cli(app: Flask) -> None:
    from .amp import cli as amp_cli
    from .reviews import cli as reviews_cli

    app.cli.add_command(users_cli)
    amp_cli.register(app)
    reviews_cli.register(app)
