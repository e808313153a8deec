"""Kubernetes and infrastructure views of the desired state: pure conversions, no I/O.

Belongs here: the CustomResourceDefinitions generated from the pydantic models of
``controller.model`` (``schema``, ``crds``), the structural-schema rules they must obey
(``structural``), documents <-> custom resources (``resource``), cluster dumps
(``kubectl get -o yaml``) -> documents (``dump``), and Pulumi inventories -> Server
documents (``inventory``). Not here: talking to an API server or to Pulumi (front-ends
in ``controller.cli``), reconciling (``controller.reconcile``). Imports only
``controller.model`` and ``controller.errors``.
"""
