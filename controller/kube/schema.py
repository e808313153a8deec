"""Structural openAPIV3Schema of a pydantic model of ``controller.model.kinds``.

The models validate with plain functions (``PlainValidator``/``BeforeValidator``), which
pydantic's own JSON schema cannot see through; so each validator function is mapped
here to the schema of the values it accepts (``VALIDATED``), and a type this module
does not know raises ``TypeError`` at generation time instead of producing a schema
that lets anything through. The rules of a structural schema (no ``$ref``, ``nullable``
instead of ``anyOf`` with null, ``x-kubernetes-list-type`` instead of ``uniqueItems``,
a ``type`` on every node) are checked by ``controller.kube.structural``.

What the schema cannot say (PHP-3 value grammar, IDN domains, cross-document rules) the
loader still checks: the CRD is the API server's first line, not a second validator.
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import annotated_types
import pydantic

from controller.model import kinds, values

Schema = dict[str, Any]

#: Says (in ``description``) that a field inherits when left out: ``default`` means the same.
INHERITED = "left out: inherited (PLAN-3)"
_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
#: An integer >= 0 or the word ``unlimited`` (RES-1); ``pattern`` applies to strings
#: only and ``minimum`` to numbers only, so the two together say exactly that.
_LIMIT: Schema = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "minimum": 0,
    "pattern": "^unlimited$",
}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_BOOL: Schema = {"type": "boolean"}
_CRON: Schema = {"type": "string", "pattern": r"^\S+( +\S+){4}$", "description": "five-field cron expression"}
_PHP_VERSION: Schema = {"type": "string", "pattern": r"^[5-9]\.[0-9]$"}
_IP: Schema = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
#: PHP directives -> values (PHP-3): names and grammar are checked by the loader.
_PHP_SETTINGS: Schema = {
    "type": "object",
    "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True},
    "description": "PHP directives and their values (PHP-3; checked by tenantctl)",
}


def _enum(*allowed: str) -> Schema:
    return {"type": "string", "enum": list(allowed)}


def _inheriting(schema: Schema) -> Schema:
    """An inheriting (UNSET) value: left out, it keeps the value below (PLAN-3). Not
    ``nullable``: the API server prunes a null there, which the loader reads the same."""
    return {**schema, "description": f"{schema['description']}; {INHERITED}" if "description" in schema else INHERITED}


def _func(alias: Any) -> Callable[..., Any]:
    """The validator function of an ``Annotated`` alias of ``controller.model``."""
    return typing.cast(Callable[..., Any], alias.__metadata__[-1].func)


#: validator function -> schema of what it accepts.
VALIDATED: dict[Callable[..., Any], Schema] = {
    _func(kinds.OptLimit): _inheriting(_LIMIT),
    _func(kinds.OptCount): _inheriting(_COUNT),
    _func(kinds.OptBool): _inheriting(_BOOL),
    _func(kinds.OptPercent): _inheriting({"type": "integer", "minimum": 0, "maximum": 100}),
    _func(kinds.OptKeepDaily): _inheriting({"type": "integer", "minimum": 1, "maximum": 30}),
    _func(kinds.OptCron): _inheriting(_CRON),
    _func(kinds.OptPhpVersion): _inheriting(_PHP_VERSION),
    _func(kinds.OptHandler): _inheriting(_enum("fpm", "cgi", "module")),
    _func(kinds.OptPolicy): _inheriting(_enum("notAllowed", "allowed")),
    _func(kinds.OptDnsMode): _inheriting(_enum("primary", "secondary")),
    _func(kinds.OptRotate): _inheriting(_enum("daily", "weekly", "monthly")),
    _func(kinds.OptBackupContent): _inheriting(_enum("settings", "settingsAndData")),
    _func(kinds.PhpSettings): _PHP_SETTINGS,
    _func(kinds.Handler): _enum("fpm", "cgi", "module"),
    _func(kinds.Role): _enum("web", "php", "db-mariadb", "db-postgresql", "dns", "backup"),
    _func(kinds.Engine): _enum("mariadb", "postgresql"),
    _func(kinds.IpType): _enum("shared", "dedicated"),
    _func(kinds.Provider): _enum("docker", "ssh"),
    _func(kinds.CustomerState): _enum("active", "suspended"),
    _func(kinds.SubState): _enum("active", "suspended"),
    _func(kinds.SuspendReason): _enum("manual", "nonpayment", "overuse"),
    _func(kinds.SiteType): _enum("subdomain", "alias"),
    # ``all`` or a list of regions: no structural schema holds a string-or-list.
    kinds._copies_to: {
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "'all' (every other region, BKP-1) or a list of region names",
    },
    kinds._opt_date: {"type": "string", "format": "date"},
    values.php_version: _PHP_VERSION,
    values.dns_label: {"type": "string", "maxLength": 63, "pattern": _LABEL_PATTERN},
    values.domain_name: {"type": "string", "maxLength": 253, "minLength": 3},
    values.db_name: {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,31}$"},
    values.ip_address: _IP,
    values.email: {"type": "string", "format": "email"},
    values.timezone: {"type": "string", "description": "IANA time zone name, e.g. Europe/Paris"},
    values._count: _COUNT,
    values._limit: _LIMIT,
    values.cron: _CRON,
    values.ssh_public_key: {"type": "string", "pattern": r"^(ssh-|ecdsa-|sk-)[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}( [ -~]*)?$",
                            "description": "an OpenSSH public key line: type, base64 key, optional comment; no options"},
}

#: (model, field) -> how the API server merges and de-duplicates the list. Every
#: other list is ``atomic`` (replaced whole).
LIST_TYPES: dict[tuple[type[pydantic.BaseModel], str], Schema] = {
    (kinds.ServerSpec, "roles"): {"x-kubernetes-list-type": "set"},
    (kinds.ServerSpec, "ips"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["address"]},
    (kinds.PhpOffer, "versions"): {"x-kubernetes-list-type": "set"},
    (kinds.PhpOffer, "handlers"): {"x-kubernetes-list-type": "set"},
    (kinds.Dns, "primaries"): {"x-kubernetes-list-type": "set"},
    (kinds.SubscriptionSpec, "addons"): {"x-kubernetes-list-type": "set"},
    (kinds.SubscriptionSpec, "databases"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    (kinds.SubscriptionSpec, "sites"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    (kinds.Access, "ftpUsers"): {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
}


def model_schema(model: type[pydantic.BaseModel]) -> Schema:
    """The object schema of ``model``: its fields, the required ones, no others."""
    props: dict[str, Schema] = {}
    required: list[str] = []
    for name, field in model.model_fields.items():
        where = f"{model.__name__}.{name}"
        schema = _annotated(field.annotation, field.metadata, where)
        if schema.get("type") == "array":
            schema = {**schema, **LIST_TYPES.get((model, name), {"x-kubernetes-list-type": "atomic"})}
        props[name] = schema
        if field.is_required():
            required.append(name)
    out: Schema = {"type": "object"}
    doc = inspect.getdoc(model)
    if doc and model.__doc__:  # its own docstring, not pydantic's BaseModel one
        out["description"] = " ".join(doc.split())
    out["properties"] = props
    if required:
        out["required"] = required
    return out


def _annotated(tp: Any, metadata: list[Any], where: str) -> Schema:
    for meta in reversed(metadata):
        func = getattr(meta, "func", None)
        if func is not None:
            if func not in VALIDATED:
                raise TypeError(f"{where}: no CRD schema for the validator {func.__qualname__} "
                                "(add it to controller.kube.schema.VALIDATED)")
            schema = copy.deepcopy(VALIDATED[func])
            if _is_optional(tp) and not schema.get("x-kubernetes-preserve-unknown-fields"):
                schema = _with_null(schema)
            return schema
    schema = type_schema(tp, where)
    for meta in metadata:
        if isinstance(meta, annotated_types.MinLen):
            schema["minItems" if schema.get("type") == "array" else "minLength"] = meta.min_length
        elif not isinstance(meta, annotated_types.MaxLen | pydantic.fields.FieldInfo):
            raise TypeError(f"{where}: no CRD schema for the constraint {meta!r}")
    return schema


def _with_null(schema: Schema) -> Schema:
    """``X | None``: ``nullable`` (never ``anyOf`` with null); an enum lists null too
    (OpenAPI 3.0.3: ``nullable`` does not extend ``enum``)."""
    out = {**schema, "nullable": True}
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def type_schema(tp: Any, where: str) -> Schema:
    """The schema of one Python type of the models (``TypeError`` if it has none)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _annotated(args[0], list(tp.__metadata__), where)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _with_null(type_schema(rest[0], where))
        raise TypeError(f"{where}: no structural schema for the union {tp!r}")
    if origin is list:
        return {"type": "array", "items": type_schema(args[0], f"{where}[]")}
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"{where}: mapping keys must be strings, got {tp!r}")
        return {"type": "object", "additionalProperties": type_schema(args[1], f"{where}{{}}")}
    if origin is Literal:
        return {"type": "string", "enum": [str(a) for a in args]}
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return model_schema(tp)
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"{where}: no CRD schema for the type {tp!r}")
