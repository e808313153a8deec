"""``tenantctl env up|down|status`` and ``tenantctl bootstrap``: servers themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from controller import errors
from controller.cli import output
from controller.cli.main import Files, Output, app, check_output, fail, load, state_dir

env_app = typer.Typer(help="The embedded multi-server environment on this machine.", no_args_is_help=True)


def _server_specs(files: list[Path]) -> list[Any]:
    """Every Server of the desired state, as the embedded package describes servers."""
    from controller.drivers import embedded

    ds = load(files)
    return [
        embedded.ServerSpec.from_dict({"name": name, **spec.model_dump(mode="json")})
        for name, spec in ds.servers.items()
    ]


def _embedded_call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except errors.DriverError as exc:  # the embedded package's errors are DriverErrors
        fail(errors.TenantctlError(f"tenantctl: {exc}"), 1)


@env_app.command("up")
def env_up(files: Files = [Path("examples")]) -> None:  # noqa: B006
    """Start (and bootstrap) the embedded servers of the desired state: idempotent."""
    from controller.drivers import embedded

    _embedded_call(embedded.env_up, _server_specs(files), state_dir())
    typer.echo("embedded environment up")


@app.command()
def bootstrap(
    files: Files,
    server: Annotated[list[str] | None, typer.Option("--server", help="only these servers (repeatable)")] = None,
) -> None:
    """Configure servers with the Ansible role over SSH (packages, base configs, services
    for their roles): what `env up` does for embedded servers, for `provider: ssh` hosts.
    Root's authorized_keys must hold tenantctl's key (`<state>/ssh/id_ed25519.pub`).
    Idempotent: a second run changes nothing."""
    from controller.drivers import embedded

    targets = [s for s in _server_specs(files) if not server or s.name in server]
    unknown = sorted(set(server or ()) - {s.name for s in targets})
    if unknown:
        fail(errors.UnknownObject(f"tenantctl: unknown server(s) {', '.join(unknown)}"))
    stats = _embedded_call(embedded.bootstrap, targets, state_dir())
    for host, st in sorted(stats.items()):
        typer.echo(f"{host}: ok={st.ok} changed={st.changed} failed={st.failed}")


@env_app.command("down")
def env_down() -> None:
    """Stop and remove the embedded servers; nothing is left running."""
    from controller.drivers import embedded

    _embedded_call(embedded.env_down, state_dir())
    typer.echo("embedded environment down")


@env_app.command("status")
def env_status(files: Files = [Path("examples")], fmt: Output = "table") -> None:  # noqa: B006
    """State of the embedded servers and their services."""
    from controller.drivers import embedded

    check_output(fmt)
    doc = _embedded_call(embedded.env_status, _server_specs(files), state_dir())
    metrics_file = state_dir() / "metrics.addr"
    doc["metrics"] = metrics_file.read_text().strip() if metrics_file.exists() else None
    if fmt == "json":
        output.print_json(doc)
        return
    for srv in doc["servers"]:
        services = ", ".join(f"{k}={v}" for k, v in srv["services"].items())
        typer.echo(f"{srv['name']:<16} {srv['state']:<8} {srv['address']:<15} {services}")
