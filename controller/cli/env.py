"""``tenantctl env up|down|status`` and ``tenantctl bootstrap``: servers themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from controller import errors
from controller.cli import output
from controller.cli.common import Files, Output, app, check_output, fail, load, state_dir

env_app = typer.Typer(help="The embedded multi-server environment on this machine.", no_args_is_help=True)

Servers = Annotated[list[str] | None, typer.Option("--server", help="only these servers (repeatable)")]


def _server_specs(files: list[Path]) -> list[Any]:
    """Every Server of the desired state, as the embedded package describes servers."""
    from controller.drivers import embedded

    ds = load(files)
    return [
        embedded.ServerSpec.from_dict({"name": name, **spec.model_dump(mode="json")})
        for name, spec in ds.servers.items()
    ]


def _embedded_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except errors.DriverError as exc:  # the embedded and provisioning errors are DriverErrors
        fail(errors.TenantctlError(f"tenantctl: {exc}"), 1)


@env_app.command("up")
def env_up(files: Files = [Path("examples")]) -> None:  # noqa: B006
    """Start (and bootstrap) the embedded servers of the desired state: idempotent.
    Servers stopped by `env down` start again with their data."""
    from controller.drivers import embedded

    _embedded_call(embedded.env_up, _server_specs(files), state_dir())
    typer.echo(f"embedded environment {embedded.env_id(state_dir())} up ({state_dir()})")


@app.command()
def bootstrap(files: Files, server: Servers = None) -> None:
    """Configure servers with the Ansible role over SSH (packages, base configs, services
    for their roles, the identity marker /etc/tenantctl/generation): what `env up` does for
    embedded servers, for `provider: ssh` hosts. Root's authorized_keys must hold
    tenantctl's key (`<state>/ssh/id_ed25519.pub`). Idempotent: a second run changes nothing."""
    from controller import provisioning

    ds = load(files)
    targets = [provisioning.Host(name, spec.address, tuple(spec.roles))
               for name, spec in ds.servers.items() if not server or name in server]
    unknown = sorted(set(server or ()) - {t.name for t in targets})
    if unknown:
        fail(errors.UnknownObject(f"tenantctl: unknown server(s) {', '.join(unknown)}"))
    stats = _embedded_call(provisioning.bootstrap, targets, state_dir())
    for host, st in sorted(stats.items()):
        typer.echo(f"{host}: ok={st.ok} changed={st.changed} failed={st.failed}")


@env_app.command("down")
def env_down(
    server: Servers = None,
    destroy_data: Annotated[bool, typer.Option(
        "--destroy-data", help="remove the servers' containers with every tenant's files and databases")] = False,
) -> None:
    """Stop this environment's embedded servers (this state directory's only: other
    environments keep running). Their data is kept, and `env up` brings them back with
    their tenants, unless --destroy-data is given."""
    from controller.drivers import embedded

    only = None
    if server:
        only = [embedded.ServerSpec(name=name, region="", provider="docker", address="127.0.0.1")
                for name in server]
    done = _embedded_call(embedded.env_down, state_dir(), only, destroy_data=destroy_data)
    for line in done.describe():
        typer.echo(line)
    typer.echo(f"embedded environment {done.env} down ({state_dir()})")


@env_app.command("status")
def env_status(files: Files = [Path("examples")], fmt: Output = "table") -> None:  # noqa: B006
    """State of the embedded servers and their services; exits 1 when a server is missing
    or stopped or one of its services is down."""
    from controller.drivers import embedded

    check_output(fmt)
    doc = _embedded_call(embedded.env_status, _server_specs(files), state_dir())
    metrics_file = state_dir() / "metrics.addr"
    doc["metrics"] = metrics_file.read_text().strip() if metrics_file.exists() else None
    if fmt == "json":
        output.print_json(doc)
    else:
        for srv in doc["servers"]:
            services = ", ".join(f"{k}={v}" for k, v in srv["services"].items())
            typer.echo(f"{srv['name']:<16} {srv['state']:<8} {srv['address']:<15} {services}")
        for program in ("prometheus", "alertmanager"):
            mon = doc["monitoring"][program]
            typer.echo(f"{program:<16} {'running' if mon['running'] else 'stopped':<8} {mon['url']}")
    if not doc["healthy"]:
        for srv in doc["servers"]:
            down = [k for k, v in srv["services"].items() if v != "up"]
            if srv["state"] != "running":
                typer.echo(f"tenantctl: server {srv['name']} ({srv['address']}) is {srv['state']}", err=True)
            elif down:
                typer.echo(f"tenantctl: server {srv['name']} ({srv['address']}): {', '.join(down)} down", err=True)
        raise typer.Exit(1)
