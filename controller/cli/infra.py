"""``tenantctl infra``: servers, DNS delegation and backup buckets from code (issue 11).

``infra preview|up STACK`` runs one of the Pulumi stacks under ``stacks/`` (``servers``,
``dns``, ``buckets``) through Pulumi's Automation API, which drives the Pulumi CLI: when
the SDK or the CLI is missing it says exactly which, in one line, and exits 2.
``infra servers`` turns the ``servers`` stack's inventory (``pulumi stack output
--json``, from ``--inventory FILE`` or ``-`` for stdin, else read from the stack) into
Server documents for ``tenantctl validate``/``apply``; ``--regions`` adds their Regions.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from controller.cli.common import app
from controller.kube import inventory

infra_app = typer.Typer(help="Servers, DNS delegation and backup buckets from the Pulumi stacks in stacks/.",
                        no_args_is_help=True)
app.add_typer(infra_app, name="infra")

STACKS = ("servers", "dns", "buckets")
DEFAULT_STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
INSTALL_CLI = "https://www.pulumi.com/docs/iac/download-install/"

StacksDir = Annotated[Path, typer.Option("--stacks-dir", help="folder holding the stacks")]
StackName = Annotated[str, typer.Option("--stack", "-s", help="Pulumi stack (an environment) of the project")]


def _die(message: str, code: int = 2) -> None:
    sys.stderr.write(f"tenantctl: {message}\n")
    raise typer.Exit(code)


def missing(command: str) -> str | None:
    """What ``infra COMMAND`` needs and is not installed, as one sentence (None: nothing)."""
    try:
        import pulumi.automation  # noqa: F401
    except ImportError:
        return f"infra {command} needs the Pulumi Python SDK: pip install 'tenantctl[stacks]'"
    if shutil.which("pulumi") is None:
        return (f"infra {command} needs the Pulumi CLI, which the Automation API drives: `pulumi` is not on PATH "
                f"(install it: {INSTALL_CLI})")
    return None


def _workspace_stack(name: str, stack: str, stacks_dir: Path, command: str) -> Any:
    if name not in STACKS:
        _die(f"unknown stack {name!r} (expected {', '.join(STACKS)})")
    work_dir = stacks_dir / name
    if not (work_dir / "Pulumi.yaml").is_file():
        _die(f"no Pulumi project at {work_dir} (Pulumi.yaml missing)")
    lack = missing(command)
    if lack:
        _die(lack)
    from pulumi import automation as auto

    try:
        return auto.create_or_select_stack(stack_name=stack, work_dir=str(work_dir))
    except auto.errors.InvalidVersionError as exc:
        _die(f"the Pulumi CLI on PATH is not one the SDK supports: {exc}")
    except auto.errors.CommandError as exc:
        _die(f"pulumi could not open stack {stack!r} of {name}: {_last_line(exc)}", 1)
    raise AssertionError  # unreachable


def _last_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _run(name: str, stack: str, stacks_dir: Path, command: str) -> None:
    from pulumi import automation as auto

    st = _workspace_stack(name, stack, stacks_dir, command)
    try:
        if command == "preview":
            st.preview(on_output=typer.echo)
        else:
            result = st.up(on_output=typer.echo)
            typer.echo(json.dumps({k: v.value for k, v in result.outputs.items()}, indent=2, default=str))
    except auto.errors.CommandError as exc:
        _die(f"pulumi {command} of {name} failed: {_last_line(exc)}", 1)


@infra_app.command("preview")
def preview(
    name: Annotated[str, typer.Argument(help="servers, dns or buckets")],
    stack: StackName = "prod",
    stacks_dir: StacksDir = DEFAULT_STACKS_DIR,
) -> None:
    """What `up` would change (Automation API: `pulumi preview`)."""
    _run(name, stack, stacks_dir, "preview")


@infra_app.command("up")
def up(
    name: Annotated[str, typer.Argument(help="servers, dns or buckets")],
    stack: StackName = "prod",
    stacks_dir: StacksDir = DEFAULT_STACKS_DIR,
) -> None:
    """Create or update the stack's resources and print its outputs (Automation API: `pulumi up`)."""
    _run(name, stack, stacks_dir, "up")


def _read_outputs(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        _die(f"cannot read the inventory: {exc}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _die(f"{source}: not JSON ({exc}): expected `pulumi stack output --json` of the servers stack")
    raise AssertionError  # unreachable


@infra_app.command("servers")
def servers(
    inventory_file: Annotated[str | None, typer.Option("--inventory", "-i", help="JSON of `pulumi stack output "
                                                       "--json` (- for stdin); default: read the stack")] = None,
    regions: Annotated[bool, typer.Option("--regions", help="also print a Region document per region")] = False,
    stack: StackName = "prod",
    stacks_dir: StacksDir = DEFAULT_STACKS_DIR,
) -> None:
    """Server documents (YAML) of the servers stack's inventory."""
    if inventory_file is not None:
        outputs = _read_outputs(inventory_file)
    else:
        st = _workspace_stack("servers", stack, stacks_dir, "servers")
        outputs = {k: v.value for k, v in st.outputs().items()}
    try:
        docs = (inventory.region_documents(outputs) if regions else []) + inventory.server_documents(outputs)
    except inventory.InventoryError as exc:
        _die(str(exc))
    sys.stdout.write("# Generated by `tenantctl infra servers` from the servers stack's inventory.\n")
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120))
