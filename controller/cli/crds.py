"""``tenantctl crds``: the CustomResourceDefinitions generated from the model, and
``tenantctl resources``: desired-state documents as custom resources (issue 11).

Without ``--out`` the six CRDs go to stdout as one YAML stream
(``tenantctl crds | kubectl apply -f -``); with ``--out DIR`` each goes to its own file
(``deploy/crds/`` is checked in); ``--check`` only compares and exits 1 when a file in DIR
differs from what the model generates (stale CRDs after a model change).

``tenantctl resources -f PATH [-n NS]`` checks the documents like ``validate`` and prints
them as the custom resources the API server stores (a Subscription's IDN name in its
ASCII form, dates as text): ``tenantctl resources -f examples/ -n tenantctl | kubectl
apply -f -``. ``tenantctl documents DUMP`` does the reverse: the objects of a cluster
dump (``kubectl get ... -o yaml``, ``-`` for stdin) as documents for ``validate``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from controller.cli.common import Files, app, load
from controller.kube import crds as kube_crds
from controller.kube import dump, resource
from controller.model import loader


@app.command(name="crds")
def crds(
    out: Annotated[Path | None, typer.Option("--out", help="write one file per CRD into this directory")] = None,
    check: Annotated[bool, typer.Option("--check", help="with --out: exit 1 if a file differs, write nothing")]
    = False,
) -> None:
    """CustomResourceDefinitions of the six kinds (group tenantctl.io, version v1)."""
    rendered = {name: kube_crds.render(crd) for name, crd in kube_crds.definitions().items()}
    if out is None:
        if check:
            sys.stderr.write("tenantctl: --check needs --out DIR\n")
            raise typer.Exit(2)
        sys.stdout.write("---\n".join(rendered.values()))
        return
    if check:
        stale = [name for name, text in rendered.items()
                 if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            sys.stderr.write(f"{out / name}: differs from the model: run tenantctl crds --out {out}\n")
        raise typer.Exit(1 if stale else 0)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        typer.echo(str(path))


@app.command(name="resources")
def resources(
    files: Files,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace", help="namespace of the resources")] = None,
) -> None:
    """The documents as custom resources, for `kubectl apply -f -` (exit 2 if invalid)."""
    load(files)  # the same checks and errors as `validate`
    out = []
    for path in loader.iter_files(files):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                out.append(resource.to_resource(doc, namespace=namespace))
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False, width=120))


@app.command(name="documents")
def documents(source: Annotated[str, typer.Argument(help="a cluster dump (kubectl get -o yaml), - for stdin")]) -> None:
    """The objects of a cluster dump as desired-state documents (status and server metadata dropped)."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        docs = dump.read(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        sys.stderr.write(f"tenantctl: cannot read the dump {source}: {exc}\n")
        raise typer.Exit(2) from None
    sys.stdout.write(dump.render(docs))
