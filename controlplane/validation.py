"""Object validation with Kubernetes' rules, limits and error wording.

kubectl users (and tests written against a real cluster) read these messages, so names, field paths and
texts follow apimachinery's ``util/validation`` and ``util/validation/field`` and core/v1's
``ValidatePod``/``ValidateService``/...: ``metadata.name: Invalid value: "Foo": a lowercase RFC 1123
subdomain must consist of ...``. The API server turns a non-empty result into a 422 ``Invalid`` Status.

Validation runs after defaulting in Kubernetes, so here a field that the defaulter fills in (a port's
``protocol``, ``restartPolicy``, a Service's ``type``...) is accepted when it is absent or empty and
checked only when it carries a value.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgspec
import msgspec.inspect as mi

from .api.coordination import Lease
from .api.core import (
    ConfigMap,
    Container,
    Endpoints,
    EnvVar,
    Event,
    HTTPGetAction,
    LifecycleHandler,
    Node,
    Pod,
    PodSpec,
    Probe,
    ReplicationController,
    ResourceRequirements,
    Secret,
    Service,
    Taint,
    Toleration,
    Volume,
)
from .api.meta import ObjectMeta, TopLevel
from .api.registry import NameRule, ResourceInfo
from .quantity import parse_quantity

__all__ = [
    "MAX_SECRET_SIZE",
    "TOTAL_ANNOTATION_SIZE_LIMIT",
    "ErrorType",
    "FieldError",
    "duplicate",
    "find_unknown_fields",
    "forbidden",
    "format_value",
    "invalid",
    "invalid_message",
    "is_config_map_key",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_env_var_name",
    "is_qualified_name",
    "is_valid_ip",
    "is_valid_ipv4",
    "is_valid_label_value",
    "is_valid_port_name",
    "is_valid_port_num",
    "not_found",
    "not_supported",
    "required",
    "too_long",
    "validate",
    "validate_name",
    "validate_object_meta",
    "validate_update",
]

# --- field errors ------------------------------------------------------------------------------

ErrorType = Literal[
    "FieldValueInvalid",
    "FieldValueRequired",
    "FieldValueNotSupported",
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueTooLong",
    "FieldValueNotFound",
]

_TYPE_TEXT: dict[str, str] = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueRequired": "Required value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueNotFound": "Not found",
}
# Types whose message never shows the offending value (it may be huge, or there is none).
_VALUELESS = frozenset({"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"})


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; ``type`` is also the ``reason`` of the Status cause."""

    type: ErrorType
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        """The message without the field path: what a Status cause's ``message`` carries."""
        text = _TYPE_TEXT[self.type]
        if self.type not in _VALUELESS:
            text = f"{text}: {format_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def message(self) -> str:
        """``<field>: <body>``, exactly as Kubernetes prints a field error."""
        return f"{self.field}: {self.body()}"

    def __str__(self) -> str:
        return self.message()


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, value, detail)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, None, detail)


def not_supported(field: str, value: Any, supported: Iterable[str]) -> FieldError:
    """``supported`` is printed in the order given; Kubernetes mostly passes sorted sets."""
    values = [_go_quote(str(v)) for v in supported]
    return FieldError("FieldValueNotSupported", field, value, f"supported values: {', '.join(values)}")


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, value)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, None, detail)


def too_long(field: str, value: Any, max_length: int) -> FieldError:
    return FieldError("FieldValueTooLong", field, value, f"must have at most {max_length} bytes")


def not_found(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", field, value)


def invalid_message(kind: str, name: str, errors: Iterable[FieldError]) -> str:
    """The ``message`` of a 422 Status: ``Pod "x" is invalid: <err>`` or ``...: [<err>, <err>]``."""
    seen: list[str] = []
    for err in errors:
        text = err.message()
        if text not in seen:
            seen.append(text)
    joined = seen[0] if len(seen) == 1 else f"[{', '.join(seen)}]"
    return f"{kind} {_go_quote(name)} is invalid: {joined}"


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_quote(s: str) -> str:
    """Go's ``%q``/``strconv.Quote``: double quotes, backslash escapes, printable Unicode kept."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            cp = ord(ch)
            if cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif cp < 0x10000:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def format_value(value: Any) -> str:
    """Render a bad value the way Go's field error does (``%q`` strings, ``%v`` numbers, ``%#v`` maps)."""
    if value is None or value is msgspec.UNSET:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(_go_quote(v) for v in value) + "}"
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        items = ", ".join(f"{_go_quote(k)}:{_go_quote(value[k])}" for k in sorted(value))
        return "map[string]string{" + items + "}"
    try:
        return msgspec.json.encode(value, order="sorted").decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


# --- name and value rules (apimachinery util/validation) -----------------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character"
)
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_ENV_VAR_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit"
)
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
_QNAME_RE = re.compile(_QNAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_ENV_VAR_RE = re.compile(_ENV_VAR_FMT)
_CONFIG_KEY_RE = re.compile(_CONFIG_KEY_FMT)
_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER_RE = re.compile("[a-z]")

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
MAX_SECRET_SIZE = 1024 * 1024
_INT32_MAX = 2**31 - 1


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Kubernetes' RegexError, including its double space before each "or".
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    text = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i:
            text += " or "
        text += f"'{ex}', "
    return text + f"regex used for validation is '{fmt}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def _blen(value: str) -> int:
    # Go measures strings in bytes.
    return len(value.encode("utf-8", "surrogatepass"))


def is_dns1123_label(value: str) -> list[str]:
    """Namespace names, container/volume/port names: at most 63 characters, no dots."""
    errs = []
    if _blen(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len_error(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(_regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    """Most object names (pods, nodes, configmaps...): at most 253 characters, dots allowed."""
    errs = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    """Service names: they become DNS labels, so they must start with a letter."""
    errs = []
    if _blen(value) > DNS1035_LABEL_MAX:
        errs.append(_max_len_error(DNS1035_LABEL_MAX))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errs.append(_regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Label and annotation keys, finalizers: ``[prefix/]name`` with a DNS-subdomain prefix."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + msg for msg in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif _blen(name) > QUALIFIED_NAME_MAX:
        errs.append("name part " + _max_len_error(QUALIFIED_NAME_MAX))
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """Label values: may be empty, otherwise like a qualified name's name part."""
    errs = []
    if _blen(value) > LABEL_VALUE_MAX:
        errs.append(_max_len_error(LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_name(value: str) -> list[str]:
    """IANA_SVC_NAME: container port names, which Services may target by name."""
    errs = []
    if _blen(value) > 15:
        errs.append(_max_len_error(15))
    if not _PORT_NAME_CHARSET_RE.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER_RE.search(value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [_inclusive_range_error(1, 65535)]


def _chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_env_var_name(value: str) -> list[str]:
    errs = []
    if not _ENV_VAR_RE.fullmatch(value):
        errs.append(_regex_error(_ENV_VAR_MSG, _ENV_VAR_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    return errs + _chdir_prefix(value)


def is_config_map_key(value: str) -> list[str]:
    """ConfigMap/Secret keys become file names in volumes, hence no '.', '..' or '/'."""
    errs = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _CONFIG_KEY_RE.fullmatch(value):
        errs.append(_regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    return errs + _chdir_prefix(value)


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def is_valid_ip(value: str) -> list[str]:
    if _parse_ip(value) is None:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def is_valid_ipv4(value: str) -> list[str]:
    if not isinstance(_parse_ip(value), ipaddress.IPv4Address):
        return ["must be a valid IPv4 address"]
    return []


def _mask_trailing_dash(name: str) -> str:
    # A generateName prefix gets random characters appended, so a trailing '-' is fine there.
    if len(name) > 1 and name.endswith("-"):
        return name[:-1] + "a"
    return name


_NAME_RULES = {
    "dns1123-subdomain": is_dns1123_subdomain,
    "dns1123-label": is_dns1123_label,
    "dns1035-label": is_dns1035_label,
}


def validate_name(rule: NameRule, name: str, prefix: bool = False) -> list[str]:
    """Check an object name (or, with ``prefix``, a ``generateName``) against a kind's name rule."""
    if prefix:
        name = _mask_trailing_dash(name)
    return _NAME_RULES[rule](name)


# --- small shared checks -------------------------------------------------------------------------


def _nonnegative(value: int | None, path: str) -> list[FieldError]:
    if value is not None and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def _int32(value: int | None, path: str) -> list[FieldError]:
    """Kubernetes' int32 fields cannot even be decoded past 2^31-1; here they would decode fine, and
    ``replicas: 1099511627776`` would have the RC controller try to start a trillion pods."""
    if value is not None and not -_INT32_MAX - 1 <= value <= _INT32_MAX:
        return [invalid(path, value, f"must be less than or equal to {_INT32_MAX}")]
    return []


def _dns1123_label(value: str, path: str) -> list[FieldError]:
    return [invalid(path, value, msg) for msg in is_dns1123_label(value)]


def _dns1123_subdomain(value: str, path: str) -> list[FieldError]:
    return [invalid(path, value, msg) for msg in is_dns1123_subdomain(value)]


def _qualified_name(value: str, path: str) -> list[FieldError]:
    return [invalid(path, value, msg) for msg in is_qualified_name(value)]


def _validate_labels(labels: Mapping[str, str] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in (labels or {}).items():
        errs += _qualified_name(key, path)
        errs += [invalid(path, value, msg) for msg in is_valid_label_value(value)]
    return errs


def _validate_annotations(annotations: Mapping[str, str] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not annotations:
        return errs
    total = 0
    for key, value in annotations.items():
        # Annotation keys are qualified names, except that case does not matter.
        errs += [invalid(path, key, msg) for msg in is_qualified_name(key.lower())]
        total += _blen(key) + _blen(value)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _port_num_or_name(port: int | str, path: str) -> list[FieldError]:
    if isinstance(port, int):
        return [invalid(path, port, msg) for msg in is_valid_port_num(port)]
    return [invalid(path, port, msg) for msg in is_valid_port_name(port)]


_PROTOCOLS = ("SCTP", "TCP", "UDP")


def _protocol(value: str | None, path: str) -> list[FieldError]:
    if value and value not in _PROTOCOLS:
        return [not_supported(path, value, _PROTOCOLS)]
    return []


def _one_of(value: str | None, allowed: Iterable[str], path: str) -> list[FieldError]:
    """For defaulted enums: unset/empty is fine (the defaulter fills it), anything else must be known."""
    allowed = tuple(allowed)
    if value and value not in allowed:
        return [not_supported(path, value, allowed)]
    return []


# --- metadata ------------------------------------------------------------------------------------


def validate_object_meta(meta: ObjectMeta, info: ResourceInfo) -> list[FieldError]:
    """ObjectMeta rules shared by every kind; the name rule and scope come from ``info``."""
    return _validate_meta(meta, info.name_rule, info.namespaced, "metadata")


def _validate_meta(meta: ObjectMeta, rule: NameRule, namespaced: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if meta.generate_name:
        errs += [
            invalid(f"{path}.generateName", meta.generate_name, msg)
            for msg in validate_name(rule, meta.generate_name, prefix=True)
        ]
    if not meta.name:
        # With generateName the server fills the name in before storing.
        if not meta.generate_name:
            errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs += [invalid(f"{path}.name", meta.name, msg) for msg in validate_name(rule, meta.name)]
    if namespaced:
        if not meta.namespace:
            errs.append(required(f"{path}.namespace"))
        else:
            errs += _dns1123_label(meta.namespace, f"{path}.namespace")
    elif meta.namespace:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    errs += _nonnegative(meta.generation, f"{path}.generation")
    errs += _validate_labels(meta.labels, f"{path}.labels")
    errs += _validate_annotations(meta.annotations, f"{path}.annotations")
    errs += _validate_owner_references(meta, f"{path}.ownerReferences")
    for finalizer in meta.finalizers or ():
        errs += _qualified_name(finalizer, f"{path}.finalizers")
    return errs


def _validate_owner_references(meta: ObjectMeta, path: str) -> list[FieldError]:
    # Kubernetes reports these without an index (``metadata.ownerReferences.uid``); so do we.
    errs: list[FieldError] = []
    first_controller = ""
    for ref in meta.owner_references or ():
        version = ref.api_version.rpartition("/")[2]
        if not version:
            errs.append(invalid(f"{path}.apiVersion", ref.api_version, "version must not be empty"))
        if not ref.kind:
            errs.append(invalid(f"{path}.kind", ref.kind, "must not be empty"))
        if not ref.name:
            errs.append(invalid(f"{path}.name", ref.name, "must not be empty"))
        if not ref.uid:
            errs.append(invalid(f"{path}.uid", ref.uid, "must not be empty"))
        if ref.controller:
            current = f"{ref.kind}/{ref.name}"
            if first_controller:
                errs.append(
                    invalid(
                        path,
                        meta.owner_references,
                        'Only one reference can have Controller set to true. Found "true" in references '
                        f"for {first_controller} and {current}",
                    )
                )
            else:
                first_controller = current
    return errs


# --- pods ----------------------------------------------------------------------------------------

_RESTART_POLICIES = ("Always", "Never", "OnFailure")
_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_HTTP_SCHEMES = ("HTTP", "HTTPS")
_STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
_ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_SUBSCRIPTED_FIELD_PATH = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]")
_NO_HANDLER_TYPE = "may not specify more than 1 handler type"


def _volume_sources(vol: Volume) -> list[str]:
    # Kubernetes walks the sources in VolumeSource's field order; the first one wins.
    present = [
        ("hostPath", vol.host_path),
        ("emptyDir", vol.empty_dir),
        ("secret", vol.secret),
        ("nfs", vol.nfs),
        ("persistentVolumeClaim", vol.persistent_volume_claim),
        ("downwardAPI", vol.downward_api),
        ("configMap", vol.config_map),
        ("projected", vol.projected),
    ]
    return [name for name, source in present if source is not None]


def _validate_volumes(volumes: list[Volume] | None, path: str) -> tuple[set[str], list[FieldError]]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, vol in enumerate(volumes or ()):
        vpath = f"{path}[{i}]"
        # No source at all is fine: the defaulter turns it into an emptyDir.
        for extra in _volume_sources(vol)[1:]:
            errs.append(forbidden(f"{vpath}.{extra}", "may not specify more than 1 volume type"))
        if vol.host_path is not None and not vol.host_path.path:
            errs.append(required(f"{vpath}.hostPath.path"))
        if vol.secret is not None and not vol.secret.secret_name:
            errs.append(required(f"{vpath}.secret.secretName"))
        if vol.config_map is not None and not vol.config_map.name:
            errs.append(required(f"{vpath}.configMap.name"))
        if vol.persistent_volume_claim is not None and not vol.persistent_volume_claim.claim_name:
            errs.append(required(f"{vpath}.persistentVolumeClaim.claimName"))
        if not vol.name:
            errs.append(required(f"{vpath}.name"))
        else:
            errs += _dns1123_label(vol.name, f"{vpath}.name")
        if vol.name in names:
            errs.append(duplicate(f"{vpath}.name", vol.name))
        else:
            names.add(vol.name)
    return names, errs


def _validate_container_ports(ctr: Container, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ctr.ports or ()):
        ppath = f"{path}[{i}]"
        if port.name:
            msgs = is_valid_port_name(port.name)
            errs += [invalid(f"{ppath}.name", port.name, msg) for msg in msgs]
            if not msgs and port.name in names:
                errs.append(duplicate(f"{ppath}.name", port.name))
            names.add(port.name)
        if not port.container_port:
            errs.append(required(f"{ppath}.containerPort"))
        else:
            errs += [
                invalid(f"{ppath}.containerPort", port.container_port, msg)
                for msg in is_valid_port_num(port.container_port)
            ]
        if port.host_port:
            errs += [
                invalid(f"{ppath}.hostPort", port.host_port, msg) for msg in is_valid_port_num(port.host_port)
            ]
        errs += _protocol(port.protocol, f"{ppath}.protocol")
    return errs


def _validate_env_value_from(ev: EnvVar, path: str) -> list[FieldError]:
    src = ev.value_from
    if src is None:
        return []
    errs: list[FieldError] = []
    count = 0
    if src.field_ref is not None:
        count += 1
        fpath = src.field_ref.field_path
        if not fpath:
            errs.append(required(f"{path}.fieldRef.fieldPath"))
        elif fpath not in _ENV_FIELD_PATHS:
            sub = _SUBSCRIPTED_FIELD_PATH.fullmatch(fpath)
            if sub is None:
                errs.append(not_supported(f"{path}.fieldRef.fieldPath", fpath, _ENV_FIELD_PATHS))
            elif sub.group(1) == "labels":
                errs += _qualified_name(sub.group(2), f"{path}.fieldRef.fieldPath")
            else:
                errs += [
                    invalid(f"{path}.fieldRef.fieldPath", sub.group(2), msg)
                    for msg in is_qualified_name(sub.group(2).lower())
                ]
    if src.resource_field_ref is not None:
        count += 1
        if not src.resource_field_ref.resource:
            errs.append(required(f"{path}.resourceFieldRef.resource"))
    for label, ref in (("configMapKeyRef", src.config_map_key_ref), ("secretKeyRef", src.secret_key_ref)):
        if ref is None:
            continue
        count += 1
        if ref.name:
            errs += _dns1123_subdomain(ref.name, f"{path}.{label}.name")
        if not ref.key:
            errs.append(required(f"{path}.{label}.key"))
        else:
            errs += [invalid(f"{path}.{label}.key", ref.key, msg) for msg in is_config_map_key(ref.key)]
    if count == 0:
        errs.append(
            invalid(
                path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )
        )
    elif ev.value:
        errs.append(invalid(path, "", "may not be specified when `value` is not empty"))
    elif count > 1:
        errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def _validate_env(ctr: Container, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ev in enumerate(ctr.env or ()):
        epath = f"{path}.env[{i}]"
        if not ev.name:
            errs.append(required(f"{epath}.name"))
        else:
            errs += [invalid(f"{epath}.name", ev.name, msg) for msg in is_env_var_name(ev.name)]
        errs += _validate_env_value_from(ev, f"{epath}.valueFrom")
    for i, src in enumerate(ctr.env_from or ()):
        spath = f"{path}.envFrom[{i}]"
        if src.prefix:
            errs += [invalid(f"{spath}.prefix", src.prefix, msg) for msg in is_env_var_name(src.prefix)]
        if src.config_map_ref is None and src.secret_ref is None:
            errs.append(invalid(spath, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif src.config_map_ref is not None and src.secret_ref is not None:
            errs.append(invalid(spath, "", "may not have more than one field specified at a time"))
    return errs


def _validate_volume_mounts(ctr: Container, volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    mount_points: set[str] = set()
    for i, mnt in enumerate(ctr.volume_mounts or ()):
        mpath = f"{path}[{i}]"
        if not mnt.name:
            errs.append(required(f"{mpath}.name"))
        if mnt.name not in volumes:
            errs.append(not_found(f"{mpath}.name", mnt.name))
        if not mnt.mount_path:
            errs.append(required(f"{mpath}.mountPath"))
        if mnt.mount_path in mount_points:
            errs.append(invalid(f"{mpath}.mountPath", mnt.mount_path, "must be unique"))
        mount_points.add(mnt.mount_path)
        if mnt.sub_path:
            if mnt.sub_path.startswith("/"):
                errs.append(invalid(f"{mpath}.subPath", mnt.sub_path, "must be a relative path"))
            if ".." in mnt.sub_path.split("/"):
                errs.append(invalid(f"{mpath}.subPath", mnt.sub_path, "must not contain '..'"))
    return errs


def _validate_resources(res: ResourceRequirements | None, path: str) -> list[FieldError]:
    if res is None:
        return []
    errs: list[FieldError] = []
    parsed: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
    for section, values in (("limits", res.limits), ("requests", res.requests)):
        for name, raw in (values or {}).items():
            rpath = f"{path}.{section}[{name}]"
            errs += _qualified_name(name, rpath)
            if (
                "/" not in name
                and name not in _STANDARD_CONTAINER_RESOURCES
                and not name.startswith("hugepages-")
            ):
                errs.append(invalid(rpath, name, "must be a standard resource for containers"))
            try:
                amount = parse_quantity(raw)
            except ValueError as err:
                errs.append(invalid(rpath, raw, str(err)))
                continue
            if amount < 0:
                errs.append(invalid(rpath, str(raw), "must be greater than or equal to 0"))
            elif "/" in name and amount != amount.to_integral_value():
                errs.append(invalid(rpath, str(raw), "must be an integer"))
            parsed[section][name] = amount
    for name, amount in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is None:
            continue
        raw_request, raw_limit = str((res.requests or {})[name]), str((res.limits or {})[name])
        overcommit = "/" not in name and not name.startswith("hugepages-")
        if not overcommit and amount != limit:
            errs.append(
                invalid(f"{path}.requests", raw_request, f"must be equal to {name} limit of {raw_limit}")
            )
        elif amount > limit:
            errs.append(
                invalid(
                    f"{path}.requests",
                    raw_request,
                    f"must be less than or equal to {name} limit of {raw_limit}",
                )
            )
    return errs


def _validate_handler(handler: Probe | LifecycleHandler, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    found = 0
    candidates: list[tuple[str, Any]] = [
        ("exec", handler.exec),
        ("httpGet", handler.http_get),
        ("tcpSocket", handler.tcp_socket),
    ]
    if isinstance(handler, Probe):
        candidates.append(("grpc", handler.grpc))
    else:
        candidates.append(("sleep", handler.sleep))
    for name, action in candidates:
        if action is None:
            continue
        if found:
            errs.append(forbidden(f"{path}.{name}", _NO_HANDLER_TYPE))
            continue
        found += 1
        apath = f"{path}.{name}"
        if name == "exec" and not action.command:
            errs.append(required(f"{apath}.command"))
        elif name in ("httpGet", "tcpSocket"):
            errs += _port_num_or_name(action.port, f"{apath}.port")
            if isinstance(action, HTTPGetAction):
                errs += _one_of(action.scheme, _HTTP_SCHEMES, f"{apath}.scheme")
        elif name == "grpc":
            errs += [invalid(f"{apath}.port", action.port, msg) for msg in is_valid_port_num(action.port)]
        elif name == "sleep":
            errs += _nonnegative(action.seconds, f"{apath}.seconds")
    if not found:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _validate_probe(probe: Probe | None, path: str, single_success: bool) -> list[FieldError]:
    if probe is None:
        return []
    errs = _validate_handler(probe, path)
    for attr, name in (
        ("initial_delay_seconds", "initialDelaySeconds"),
        ("timeout_seconds", "timeoutSeconds"),
        ("period_seconds", "periodSeconds"),
        ("success_threshold", "successThreshold"),
        ("failure_threshold", "failureThreshold"),
    ):
        errs += _nonnegative(getattr(probe, attr), f"{path}.{name}")
    if probe.termination_grace_period_seconds is not None and probe.termination_grace_period_seconds <= 0:
        errs.append(
            invalid(
                f"{path}.terminationGracePeriodSeconds",
                probe.termination_grace_period_seconds,
                "must be greater than 0",
            )
        )
    # Liveness and startup probes can only ever succeed once; 0 is the defaulter's "unset".
    if single_success and probe.success_threshold not in (None, 0, 1):
        errs.append(invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1"))
    return errs


def _validate_container_common(ctr: Container, volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not ctr.name:
        errs.append(required(f"{path}.name"))
    else:
        errs += _dns1123_label(ctr.name, f"{path}.name")
    if not ctr.image:
        errs.append(required(f"{path}.image"))
    errs += _validate_container_ports(ctr, f"{path}.ports")
    errs += _validate_env(ctr, path)
    errs += _validate_volume_mounts(ctr, volumes, f"{path}.volumeMounts")
    errs += _one_of(ctr.image_pull_policy, _PULL_POLICIES, f"{path}.imagePullPolicy")
    errs += _one_of(
        ctr.termination_message_policy, ("File", "FallbackToLogsOnError"), f"{path}.terminationMessagePolicy"
    )
    errs += _validate_resources(ctr.resources, f"{path}.resources")
    return errs


def _validate_lifecycle(ctr: Container, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if ctr.lifecycle is not None:
        if ctr.lifecycle.post_start is not None:
            errs += _validate_handler(ctr.lifecycle.post_start, f"{path}.lifecycle.postStart")
        if ctr.lifecycle.pre_stop is not None:
            errs += _validate_handler(ctr.lifecycle.pre_stop, f"{path}.lifecycle.preStop")
    errs += _validate_probe(ctr.liveness_probe, f"{path}.livenessProbe", single_success=True)
    errs += _validate_probe(ctr.readiness_probe, f"{path}.readinessProbe", single_success=False)
    errs += _validate_probe(ctr.startup_probe, f"{path}.startupProbe", single_success=True)
    return errs


def _host_port_conflicts(containers: list[Container], path: str, offset: int = 0) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for ci, ctr in enumerate(containers):
        for pi, port in enumerate(ctr.ports or ()):
            if not port.host_port:
                continue
            key = f"{port.host_ip or ''}/{port.protocol or 'TCP'}/{port.host_port}"
            if key in seen:
                errs.append(duplicate(f"{path}[{ci + offset}].ports[{pi}].hostPort", key))
            seen.add(key)
    return errs


def _validate_containers(spec: PodSpec, volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not spec.containers:
        errs.append(required(f"{path}.containers"))
    names: set[str] = set()
    for i, ctr in enumerate(spec.containers):
        cpath = f"{path}.containers[{i}]"
        errs += _validate_container_common(ctr, volumes, cpath)
        if ctr.name in names:
            errs.append(duplicate(f"{cpath}.name", ctr.name))
        names.add(ctr.name)
        errs += _validate_lifecycle(ctr, cpath)
        if ctr.restart_policy is not None:
            errs.append(forbidden(f"{cpath}.restartPolicy", "may not be set for non-init containers"))
    errs += _host_port_conflicts(spec.containers, f"{path}.containers")

    for i, ctr in enumerate(spec.init_containers or ()):
        cpath = f"{path}.initContainers[{i}]"
        errs += _validate_container_common(ctr, volumes, cpath)
        sidecar = False
        if ctr.restart_policy is not None:
            # "Always" makes it a sidecar; no other container restart policy exists for init containers.
            sidecar = ctr.restart_policy == "Always"
            if not sidecar:
                errs.append(not_supported(f"{cpath}.restartPolicy", ctr.restart_policy, ("Always",)))
        if ctr.name in names:
            errs.append(duplicate(f"{cpath}.name", ctr.name))
        elif ctr.name:
            names.add(ctr.name)
        # Init containers run one at a time, so only conflicts within one container count.
        errs += _host_port_conflicts([ctr], f"{path}.initContainers", offset=i)
        if sidecar:
            errs += _validate_lifecycle(ctr, cpath)
        else:
            for attr, name in (
                ("lifecycle", "lifecycle"),
                ("liveness_probe", "livenessProbe"),
                ("readiness_probe", "readinessProbe"),
                ("startup_probe", "startupProbe"),
            ):
                if getattr(ctr, attr) is not None:
                    errs.append(
                        forbidden(
                            f"{cpath}.{name}",
                            "may not be set for init containers without restartPolicy=Always",
                        )
                    )
    return errs


def _validate_tolerations(tolerations: list[Toleration] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, tol in enumerate(tolerations or ()):
        tpath = f"{path}[{i}]"
        if tol.key:
            errs += _qualified_name(tol.key, f"{tpath}.key")
        if not tol.key and tol.operator != "Exists":
            errs.append(
                invalid(
                    f"{tpath}.operator",
                    tol.operator or "",
                    "operator must be Exists when `key` is empty, "
                    'which means "match all values and all keys"',
                )
            )
        if tol.toleration_seconds is not None and tol.effect != "NoExecute":
            errs.append(
                invalid(
                    f"{tpath}.effect",
                    tol.effect or "",
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        if tol.operator in (None, "", "Equal"):
            msgs = is_valid_label_value(tol.value or "")
            if msgs:
                errs.append(invalid(f"{tpath}.operator", tol.value or "", ";".join(msgs)))
        elif tol.operator == "Exists":
            if tol.value:
                errs.append(
                    invalid(f"{tpath}.operator", tol, "value must be empty when `operator` is 'Exists'")
                )
        else:
            errs.append(not_supported(f"{tpath}.operator", tol.operator, ("Equal", "Exists")))
        if tol.effect:
            errs += _one_of(tol.effect, _TAINT_EFFECTS, f"{tpath}.effect")
    return errs


def _validate_pod_spec(spec: PodSpec, path: str) -> list[FieldError]:
    volumes, errs = _validate_volumes(spec.volumes, f"{path}.volumes")
    errs += _validate_containers(spec, volumes, path)
    if spec.host_network:
        for i, ctr in enumerate(spec.containers):
            for j, port in enumerate(ctr.ports or ()):
                # An unset hostPort is defaulted to containerPort on the host network.
                if port.host_port and port.host_port != port.container_port:
                    errs.append(
                        invalid(
                            f"{path}.containers[{i}].ports[{j}].hostPort",
                            port.host_port,
                            "must match `containerPort` when `hostNetwork` is true",
                        )
                    )
    errs += _one_of(spec.restart_policy, _RESTART_POLICIES, f"{path}.restartPolicy")
    errs += _one_of(spec.dns_policy, _DNS_POLICIES, f"{path}.dnsPolicy")
    if spec.dns_policy == "None":
        if spec.dns_config is None:
            errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
        elif not spec.dns_config.nameservers:
            errs.append(
                required(
                    f"{path}.dnsConfig.nameservers",
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                )
            )
    if spec.dns_config is not None:
        for i, ns in enumerate(spec.dns_config.nameservers or ()):
            errs += [invalid(f"{path}.dnsConfig.nameservers[{i}]", ns, msg) for msg in is_valid_ip(ns)]
    errs += _validate_labels(spec.node_selector, f"{path}.nodeSelector")
    if spec.service_account_name:
        errs += _dns1123_subdomain(spec.service_account_name, f"{path}.serviceAccountName")
    if spec.node_name:
        errs += _dns1123_subdomain(spec.node_name, f"{path}.nodeName")
    if spec.active_deadline_seconds is not None and not 1 <= spec.active_deadline_seconds <= _INT32_MAX:
        errs.append(
            invalid(
                f"{path}.activeDeadlineSeconds",
                spec.active_deadline_seconds,
                _inclusive_range_error(1, _INT32_MAX),
            )
        )
    errs += _nonnegative(spec.termination_grace_period_seconds, f"{path}.terminationGracePeriodSeconds")
    if spec.hostname:
        errs += _dns1123_label(spec.hostname, f"{path}.hostname")
    if spec.subdomain:
        errs += _dns1123_label(spec.subdomain, f"{path}.subdomain")
    errs += _validate_tolerations(spec.tolerations, f"{path}.tolerations")
    for i, alias in enumerate(spec.host_aliases or ()):
        errs += [invalid(f"{path}.hostAliases[{i}].ip", alias.ip, msg) for msg in is_valid_ip(alias.ip)]
        for j, hostname in enumerate(alias.hostnames or ()):
            errs += _dns1123_subdomain(hostname, f"{path}.hostAliases[{i}].hostnames[{j}]")
    return errs


def _validate_pod(pod: Pod) -> list[FieldError]:
    return _validate_pod_spec(pod.spec, "spec")


# --- replication controllers -----------------------------------------------------------------------


def _validate_rc(rc: ReplicationController) -> list[FieldError]:
    spec = rc.spec
    errs = _nonnegative(spec.min_ready_seconds, "spec.minReadySeconds")
    if not spec.selector:
        errs.append(required("spec.selector"))
    else:
        errs += _validate_labels(spec.selector, "spec.selector")
    errs += _nonnegative(spec.replicas, "spec.replicas") or _int32(spec.replicas, "spec.replicas")
    errs += _int32(spec.min_ready_seconds, "spec.minReadySeconds")
    template = spec.template
    if template is None:
        errs.append(required("spec.template"))
        return errs
    meta = template.metadata or ObjectMeta()
    labels = meta.labels or {}
    if spec.selector and any(labels.get(k) != v for k, v in spec.selector.items()):
        errs.append(
            invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    errs += _validate_labels(meta.labels, "spec.template.metadata.labels")
    errs += _validate_annotations(meta.annotations, "spec.template.metadata.annotations")
    pod_spec = template.spec or PodSpec()
    errs += _validate_pod_spec(pod_spec, "spec.template.spec")
    # A pod an RC owns must keep running; unset means the defaulter's Always.
    if pod_spec.restart_policy and pod_spec.restart_policy != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", pod_spec.restart_policy, ("Always",)))
    if pod_spec.active_deadline_seconds is not None:
        errs.append(
            invalid(
                "spec.template.spec.activeDeadlineSeconds",
                pod_spec.active_deadline_seconds,
                "activeDeadlineSeconds in ReplicationController is not Supported",
            )
        )
    return errs


# --- services and endpoints ----------------------------------------------------------------------

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_SESSION_AFFINITIES = ("ClientIP", "None")
_MAX_CLIENT_IP_AFFINITY_SECONDS = 86400


def _validate_service(svc: Service) -> list[FieldError]:
    spec = svc.spec
    errs: list[FieldError] = []
    svc_type = spec.type or "ClusterIP"
    cluster_ip = spec.cluster_ip or ""
    headless = cluster_ip == "None"

    if not spec.ports and not headless and svc_type != "ExternalName":
        errs.append(required("spec.ports"))
    if svc_type == "ExternalName":
        if cluster_ip:
            errs.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
        # The name (a CNAME target) may end in a dot to mark it fully qualified.
        cname = (spec.external_name or "").removesuffix(".")
        if cname:
            errs += _dns1123_subdomain(cname, "spec.externalName")
        else:
            errs.append(required("spec.externalName"))
    elif cluster_ip and not headless:
        errs += [invalid("spec.clusterIP", cluster_ip, msg) for msg in is_valid_ipv4(cluster_ip)]
    if svc_type in ("NodePort", "LoadBalancer") and headless:
        errs.append(
            invalid("spec.clusterIP", cluster_ip, f"may not be set to 'None' for {svc_type} services")
        )
    for i, ip in enumerate(spec.cluster_ips or ()):
        if ip == "None" and i == 0:
            continue
        if ip == "None":
            errs.append(invalid(f"spec.clusterIPs[{i}]", ip, "'None' must be the first and only value"))
        else:
            errs += [invalid(f"spec.clusterIPs[{i}]", ip, msg) for msg in is_valid_ip(ip)]
    if spec.cluster_ips and cluster_ip and spec.cluster_ips[0] != cluster_ip:
        errs.append(invalid("spec.clusterIPs", spec.cluster_ips, "first value must match `clusterIP`"))

    ports = spec.ports or []
    names: set[str] = set()
    for i, port in enumerate(ports):
        ppath = f"spec.ports[{i}]"
        if len(ports) > 1 and not port.name:
            errs.append(required(f"{ppath}.name"))
        elif port.name:
            errs += _dns1123_label(port.name, f"{ppath}.name")
            if port.name in names:
                errs.append(duplicate(f"{ppath}.name", port.name))
            names.add(port.name)
        errs += [invalid(f"{ppath}.port", port.port, msg) for msg in is_valid_port_num(port.port)]
        errs += _protocol(port.protocol, f"{ppath}.protocol")
        if port.target_port is not None:
            errs += _port_num_or_name(port.target_port, f"{ppath}.targetPort")
        if port.app_protocol:
            errs += _qualified_name(port.app_protocol, f"{ppath}.appProtocol")
        if port.node_port and svc_type in ("ClusterIP", "ExternalName"):
            errs.append(forbidden(f"{ppath}.nodePort", f"may not be used when `type` is '{svc_type}'"))

    node_ports: set[tuple[str, int]] = set()
    service_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        protocol = port.protocol or "TCP"
        if port.node_port:
            if (protocol, port.node_port) in node_ports:
                errs.append(duplicate(f"spec.ports[{i}].nodePort", port.node_port))
            node_ports.add((protocol, port.node_port))
        if (protocol, port.port) in service_ports:
            errs.append(duplicate(f"spec.ports[{i}]", {"port": port.port, "protocol": protocol}))
        service_ports.add((protocol, port.port))

    errs += _validate_labels(spec.selector, "spec.selector")
    errs += _one_of(spec.session_affinity, _SESSION_AFFINITIES, "spec.sessionAffinity")
    affinity = spec.session_affinity or "None"
    config = spec.session_affinity_config
    if affinity == "None" and config is not None and config.client_ip:
        errs.append(
            invalid("spec.sessionAffinityConfig", config, "must not be set when session affinity is None")
        )
    elif affinity == "ClientIP" and config is not None and config.client_ip:
        timeout = config.client_ip.get("timeoutSeconds")
        if timeout is not None and (
            not isinstance(timeout, int) or not 0 < timeout <= _MAX_CLIENT_IP_AFFINITY_SECONDS
        ):
            errs.append(
                invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    timeout,
                    f"must be greater than 0 and less than {_MAX_CLIENT_IP_AFFINITY_SECONDS}",
                )
            )
    errs += _one_of(spec.type, _SERVICE_TYPES, "spec.type")
    for i, ip in enumerate(spec.external_ips or ()):
        errs += [invalid(f"spec.externalIPs[{i}]", ip, msg) for msg in is_valid_ip(ip)]
    errs += _validate_service_traffic(svc, svc_type)
    return errs


def _validate_service_traffic(svc: Service, svc_type: str) -> list[FieldError]:
    """Traffic policies, the health-check port, the load-balancer IP and the IP families."""
    spec = svc.spec
    errs: list[FieldError] = []
    external_types = ("NodePort", "LoadBalancer")
    if spec.external_traffic_policy:
        if svc_type not in external_types:
            errs.append(
                invalid(
                    "spec.externalTrafficPolicy",
                    spec.external_traffic_policy,
                    "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
                )
            )
        else:
            errs += _one_of(spec.external_traffic_policy, ("Cluster", "Local"), "spec.externalTrafficPolicy")
    if spec.internal_traffic_policy:
        errs += _one_of(spec.internal_traffic_policy, ("Cluster", "Local"), "spec.internalTrafficPolicy")
    if spec.health_check_node_port:
        if svc_type != "LoadBalancer" or spec.external_traffic_policy != "Local":
            errs.append(
                invalid(
                    "spec.healthCheckNodePort",
                    spec.health_check_node_port,
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                )
            )
        else:
            errs += [
                invalid("spec.healthCheckNodePort", spec.health_check_node_port, msg)
                for msg in is_valid_port_num(spec.health_check_node_port)
            ]
    if spec.load_balancer_ip:
        errs += [
            invalid("spec.loadBalancerIP", spec.load_balancer_ip, m)
            for m in is_valid_ip(spec.load_balancer_ip)
        ]
    if spec.load_balancer_source_ranges and svc_type != "LoadBalancer":
        errs.append(
            forbidden("spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'")
        )
    if svc_type == "ExternalName":
        if spec.ip_families:
            errs.append(forbidden("spec.ipFamilies", "may not be set for type `ExternalName`"))
        if spec.ip_family_policy:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for type `ExternalName`"))
    else:
        for i, family in enumerate(spec.ip_families or ()):
            errs += _one_of(family, ("IPv4", "IPv6"), f"spec.ipFamilies[{i}]")
        if spec.ip_family_policy:
            errs += _one_of(
                spec.ip_family_policy,
                ("SingleStack", "PreferDualStack", "RequireDualStack"),
                "spec.ipFamilyPolicy",
            )
    return errs


def _validate_endpoints(ep: Endpoints) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, subset in enumerate(ep.subsets or ()):
        spath = f"subsets[{i}]"
        if not subset.addresses and not subset.not_ready_addresses:
            errs.append(required(spath, "must specify `addresses` or `notReadyAddresses`"))
        for label, addresses in (
            ("addresses", subset.addresses),
            ("notReadyAddresses", subset.not_ready_addresses),
        ):
            for j, addr in enumerate(addresses or ()):
                apath = f"{spath}.{label}[{j}]"
                errs += [invalid(f"{apath}.ip", addr.ip, msg) for msg in is_valid_ip(addr.ip)]
                if addr.hostname:
                    errs += _dns1123_label(addr.hostname, f"{apath}.hostname")
                if addr.node_name:
                    errs += _dns1123_subdomain(addr.node_name, f"{apath}.nodeName")
        ports = subset.ports or []
        for j, port in enumerate(ports):
            ppath = f"{spath}.ports[{j}]"
            if len(ports) > 1 and not port.name:
                errs.append(required(f"{ppath}.name"))
            elif port.name:
                errs += _dns1123_label(port.name, f"{ppath}.name")
            errs += [invalid(f"{ppath}.port", port.port, msg) for msg in is_valid_port_num(port.port)]
            errs += _protocol(port.protocol, f"{ppath}.protocol")
            if port.app_protocol:
                errs += _qualified_name(port.app_protocol, f"{ppath}.appProtocol")
    return errs


# --- nodes, namespaces, config, events, leases ---------------------------------------------------


def _validate_taints(taints: list[Taint] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints or ()):
        tpath = f"{path}[{i}]"
        errs += _qualified_name(taint.key, f"{tpath}.key")
        msgs = is_valid_label_value(taint.value or "")
        if msgs:
            errs.append(invalid(f"{tpath}.value", taint.value or "", ";".join(msgs)))
        if not taint.effect:
            errs.append(required(f"{tpath}.effect"))
        elif taint.effect not in _TAINT_EFFECTS:
            errs.append(not_supported(f"{tpath}.effect", taint.effect, _TAINT_EFFECTS))
        if (taint.key, taint.effect) in seen:
            errs.append(
                FieldError(
                    "FieldValueDuplicate", tpath, taint, "taints must be unique by key and effect pair"
                )
            )
        seen.add((taint.key, taint.effect))
    return errs


def _validate_node(node: Node) -> list[FieldError]:
    return _validate_taints(node.spec.taints, "spec.taints")


def _b64_error(value: str) -> str | None:
    """Go's ``illegal base64 data at input byte N`` for a Secret/ConfigMap binary value, or None."""
    cleaned = value.replace("\r", "").replace("\n", "")
    try:
        base64.b64decode(cleaned, validate=True)
        return None
    except (binascii.Error, ValueError):
        pass
    alphabet = re.compile(r"[A-Za-z0-9+/]")
    for i, ch in enumerate(cleaned):
        if ch == "=":
            break
        if not alphabet.fullmatch(ch):
            return f"illegal base64 data at input byte {i}"
    return f"illegal base64 data at input byte {(len(cleaned.rstrip('=')) // 4) * 4}"


def _b64_len(value: str) -> int:
    cleaned = value.replace("\r", "").replace("\n", "")
    return len(cleaned) * 3 // 4 - len(cleaned) + len(cleaned.rstrip("="))


def _validate_keys(data: Mapping[str, str] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in data or {}:
        errs += [invalid(f"{path}[{key}]", key, msg) for msg in is_config_map_key(key)]
    return errs


def _as_dict(value: dict[str, str] | msgspec.UnsetType | None) -> dict[str, str]:
    return value if isinstance(value, dict) else {}


def _validate_config_map(cm: ConfigMap) -> list[FieldError]:
    data, binary = _as_dict(cm.data), _as_dict(cm.binary_data)
    errs = _validate_keys(data, "data")
    for key in data:
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    errs += _validate_keys(binary, "binaryData")
    total = sum(_blen(v) for v in data.values())
    for key, value in binary.items():
        if key in data:
            errs.append(invalid(f"binaryData[{key}]", key, "duplicate of key present in data"))
        problem = _b64_error(value)
        if problem:
            errs.append(invalid(f"binaryData[{key}]", value, problem))
        total += _b64_len(value)
    if total > MAX_SECRET_SIZE:
        # Kubernetes reports the whole object with an empty path, which prints as "[]".
        errs.append(too_long("[]", "", MAX_SECRET_SIZE))
    return errs


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _validate_secret(secret: Secret) -> list[FieldError]:
    data, string_data = _as_dict(secret.data), _as_dict(secret.string_data)
    # stringData is merged into data on write, so its keys are reported as data keys.
    errs = _validate_keys(data, "data")
    errs += _validate_keys({k: v for k, v in string_data.items() if k not in data}, "data")
    total = 0
    for key, value in data.items():
        if key in string_data:
            continue
        problem = _b64_error(value)
        if problem:
            errs.append(invalid(f"data[{key}]", value, problem))
        total += _b64_len(value)
    total += sum(_blen(v) for v in string_data.values())
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("data", "", MAX_SECRET_SIZE))
    keys = set(data) | set(string_data)
    secret_type = secret.type if isinstance(secret.type, str) else ""
    if secret_type == "kubernetes.io/service-account-token":
        name_key = "kubernetes.io/service-account.name"
        if not (secret.metadata.annotations or {}).get(name_key):
            errs.append(required(f"metadata.annotations[{name_key}]"))
    elif secret_type == "kubernetes.io/basic-auth":
        if "username" not in keys and "password" not in keys:
            errs += [required("data[username]"), required("data[password]")]
    else:
        for key in _SECRET_REQUIRED_KEYS.get(secret_type, ()):
            if key not in keys:
                errs.append(required(f"data[{key}]"))
    return errs


def _validate_event(event: Event) -> list[FieldError]:
    errs: list[FieldError] = []
    involved = event.involved_object
    if not involved.name:
        errs.append(required("involvedObject.name"))
    if not involved.kind:
        errs.append(required("involvedObject.kind"))
    namespace = event.metadata.namespace or ""
    involved_ns = involved.namespace or ""
    if not event.event_time:
        # Old-style events: an event about a cluster-scoped object lives in "default" (or nowhere).
        if (involved_ns and namespace != involved_ns) or (
            not involved_ns and namespace not in ("", "default")
        ):
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
        if not event.reporting_component:
            errs.append(required("reportingComponent"))
        else:
            errs += _qualified_name(event.reporting_component, "reportingComponent")
        if not event.reporting_instance:
            errs.append(required("reportingInstance"))
        elif len(event.reporting_instance) > 128:
            errs.append(invalid("reportingInstance", "", "can have at most 128 characters"))
        if not isinstance(event.action, str) or not event.action:
            errs.append(required("action"))
        if not isinstance(event.reason, str) or not event.reason:
            errs.append(required("reason"))
    if isinstance(event.count, int):
        errs += _int32(event.count, "count")
    return errs


def _validate_lease(lease: Lease) -> list[FieldError]:
    spec = lease.spec
    errs: list[FieldError] = []
    if spec.lease_duration_seconds is not None and spec.lease_duration_seconds <= 0:
        errs.append(
            invalid("spec.leaseDurationSeconds", spec.lease_duration_seconds, "must be greater than 0")
        )
    errs += _nonnegative(spec.lease_transitions, "spec.leaseTransitions")
    errs += _int32(spec.lease_duration_seconds, "spec.leaseDurationSeconds")
    errs += _int32(spec.lease_transitions, "spec.leaseTransitions")
    return errs


# --- entry points --------------------------------------------------------------------------------


def validate(obj: TopLevel, info: ResourceInfo) -> list[FieldError]:
    """Everything wrong with ``obj`` as a create (or the new side of an update); empty means valid."""
    meta = getattr(obj, "metadata", None)
    errs = validate_object_meta(meta, info) if isinstance(meta, ObjectMeta) else []
    if isinstance(obj, Pod):
        errs += _validate_pod(obj)
    elif isinstance(obj, ReplicationController):
        errs += _validate_rc(obj)
    elif isinstance(obj, Service):
        errs += _validate_service(obj)
    elif isinstance(obj, Endpoints):
        errs += _validate_endpoints(obj)
    elif isinstance(obj, Node):
        errs += _validate_node(obj)
    elif isinstance(obj, ConfigMap):
        errs += _validate_config_map(obj)
    elif isinstance(obj, Secret):
        errs += _validate_secret(obj)
    elif isinstance(obj, Event):
        errs += _validate_event(obj)
    elif isinstance(obj, Lease):
        errs += _validate_lease(obj)
    return errs


_POD_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _immutable(new: Any, old: Any, path: str) -> list[FieldError]:
    if _normalized(new) != _normalized(old):
        return [invalid(path, new, "field is immutable")]
    return []


def _normalized(value: Any) -> Any:
    """Builtins with None and empty containers dropped: Kubernetes' semantic equality treats nil and
    empty alike, and a client that sends ``[]`` where the store has nothing changed nothing."""
    if isinstance(value, msgspec.Struct):
        value = msgspec.to_builtins(value)
    if isinstance(value, dict):
        out = {k: _normalized(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list | tuple):
        return [_normalized(v) for v in value]
    return None if value is msgspec.UNSET else value


def _diff_paths(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _diff_paths(old.get(key), new.get(key), f"{path}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += _diff_paths(a, b, f"{path}[{i}]")
        return out
    return [] if old == new else [path]


def _validate_meta_update(new: ObjectMeta, old: ObjectMeta) -> list[FieldError]:
    errs = _immutable(new.name or "", old.name or "", "metadata.name")
    errs += _immutable(new.namespace or "", old.namespace or "", "metadata.namespace")
    # An update that leaves uid/creationTimestamp out keeps the stored ones (the server copies them over).
    if new.uid:
        errs += _immutable(new.uid, old.uid or "", "metadata.uid")
    if new.creation_timestamp:
        errs += _immutable(new.creation_timestamp, old.creation_timestamp or "", "metadata.creationTimestamp")
    return errs


def _toleration_key(tol: Toleration) -> Any:
    return _normalized(msgspec.structs.replace(tol, toleration_seconds=None))


def _validate_pod_update(new: Pod, old: Pod) -> list[FieldError]:
    errs: list[FieldError] = []
    for label, new_list, old_list in (
        ("containers", new.spec.containers, old.spec.containers),
        ("initContainers", new.spec.init_containers or [], old.spec.init_containers or []),
    ):
        if len(new_list) != len(old_list):
            return [forbidden(f"spec.{label}", "pod updates may not add or remove containers")]
        for i, ctr in enumerate(new_list):
            if ctr.image and ctr.image.strip() != ctr.image:
                errs.append(
                    invalid(
                        f"spec.{label}[{i}].image", ctr.image, "must not have leading or trailing whitespace"
                    )
                )

    new_ads, old_ads = new.spec.active_deadline_seconds, old.spec.active_deadline_seconds
    if new_ads is not None:
        if not 0 <= new_ads <= _INT32_MAX:
            return [
                *errs,
                invalid("spec.activeDeadlineSeconds", new_ads, _inclusive_range_error(0, _INT32_MAX)),
            ]
        if old_ads is not None and old_ads < new_ads:
            return [
                *errs,
                invalid(
                    "spec.activeDeadlineSeconds", new_ads, "must be less than or equal to previous value"
                ),
            ]
    elif old_ads is not None:
        errs.append(
            invalid(
                "spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"
            )
        )

    # Tolerations may only be added (an existing one may change its tolerationSeconds).
    new_tols = [_toleration_key(t) for t in new.spec.tolerations or ()]
    for tol in old.spec.tolerations or ():
        if _toleration_key(tol) not in new_tols:
            errs.append(
                forbidden(
                    "spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"
                )
            )
            break

    if new.spec == old.spec:  # status and metadata writes: nothing else to compare
        return errs
    munged = msgspec.structs.replace(
        new.spec,
        containers=[
            msgspec.structs.replace(c, image=o.image)
            for c, o in zip(new.spec.containers, old.spec.containers, strict=True)
        ],
        init_containers=(
            None
            if new.spec.init_containers is None
            else [
                msgspec.structs.replace(c, image=o.image)
                for c, o in zip(new.spec.init_containers, old.spec.init_containers or [], strict=True)
            ]
        ),
        active_deadline_seconds=old.spec.active_deadline_seconds,
        tolerations=old.spec.tolerations,
        termination_grace_period_seconds=old.spec.termination_grace_period_seconds,
    )
    old_spec, new_spec = _normalized(old.spec), _normalized(munged)
    if old_spec != new_spec:
        changed = ", ".join(_diff_paths(old_spec, new_spec, "spec"))
        errs.append(forbidden("spec", f"{_POD_UPDATE_MESSAGE}\nchanged: {changed}"))
    return errs


def _validate_service_update(new: Service, old: Service) -> list[FieldError]:
    # Switching to or from ExternalName is the one time the cluster IP may change (be set or dropped).
    if "ExternalName" in (new.spec.type, old.spec.type):
        return []
    if old.spec.cluster_ip and (new.spec.cluster_ip or "") != old.spec.cluster_ip:
        return [invalid("spec.clusterIP", new.spec.cluster_ip or "", "field is immutable")]
    return []


def _validate_immutable_data(new: ConfigMap | Secret, old: ConfigMap | Secret) -> list[FieldError]:
    errs: list[FieldError] = []
    if old.immutable is True:
        message = "field is immutable when `immutable` is set"
        if new.immutable is not True:
            errs.append(forbidden("immutable", message))
        if _normalized(new.data) != _normalized(old.data):
            errs.append(forbidden("data", message))
        if isinstance(new, ConfigMap) and isinstance(old, ConfigMap):
            if _normalized(new.binary_data) != _normalized(old.binary_data):
                errs.append(forbidden("binaryData", message))
        elif isinstance(new, Secret) and _as_dict(new.string_data):
            errs.append(forbidden("data", message))
    if isinstance(new, Secret) and isinstance(old, Secret):
        new_type = new.type if isinstance(new.type, str) else ""
        old_type = old.type if isinstance(old.type, str) else ""
        if new_type != old_type and new_type:
            errs.append(invalid("type", new_type, "field is immutable"))
    return errs


def validate_update(new: TopLevel, old: TopLevel, info: ResourceInfo) -> list[FieldError]:
    """``validate(new)`` plus what may not change between the stored ``old`` and ``new``."""
    errs: list[FieldError] = []
    new_meta, old_meta = getattr(new, "metadata", None), getattr(old, "metadata", None)
    if isinstance(new_meta, ObjectMeta) and isinstance(old_meta, ObjectMeta):
        errs += _validate_meta_update(new_meta, old_meta)
    errs += validate(new, info)
    if isinstance(new, Pod) and isinstance(old, Pod):
        errs += _validate_pod_update(new, old)
    elif isinstance(new, Service) and isinstance(old, Service):
        errs += _validate_service_update(new, old)
    elif isinstance(new, ConfigMap | Secret) and isinstance(old, ConfigMap | Secret):
        errs += _validate_immutable_data(new, old)
    return errs


# --- unknown fields ------------------------------------------------------------------------------


@functools.cache
def _type_info(typ: Any) -> mi.Type:
    return mi.type_info(typ)


_STRUCT_FIELDS: dict[type, dict[str, mi.Type]] = {}


def _struct_fields(st: mi.StructType) -> dict[str, mi.Type]:
    fields = _STRUCT_FIELDS.get(st.cls)
    if fields is None:
        fields = {f.encode_name: f.type for f in st.fields}
        if st.tag_field is not None:
            fields[st.tag_field] = mi.AnyType()
        _STRUCT_FIELDS[st.cls] = fields
    return fields


_SEQUENCE_TYPES = (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)


def _pick(raw: Any, t: mi.Type) -> mi.Type | None:
    """The member of a union that would decode ``raw``; only containers matter for unknown fields."""
    if not isinstance(t, mi.UnionType):
        return t
    for member in t.types:
        if isinstance(member, mi.AnyType):
            return member
        if isinstance(raw, dict) and isinstance(member, mi.StructType | mi.DictType):
            return member
        if isinstance(raw, list) and isinstance(member, _SEQUENCE_TYPES):
            return member
    return None


def _walk(raw: Any, t: mi.Type | None, path: str, out: list[str]) -> None:
    t = _pick(raw, t) if t is not None else None
    if t is None or isinstance(t, mi.AnyType):
        return
    if isinstance(raw, dict):
        if isinstance(t, mi.StructType):
            fields = _struct_fields(t)
            for key, value in raw.items():
                sub = f"{path}.{key}" if path else str(key)
                ft = fields.get(key) if isinstance(key, str) else None
                if ft is None:
                    out.append(sub)
                else:
                    _walk(value, ft, sub, out)
        elif isinstance(t, mi.DictType):
            for key, value in raw.items():
                _walk(value, t.value_type, f"{path}.{key}" if path else str(key), out)
    elif isinstance(raw, list) and isinstance(t, _SEQUENCE_TYPES):
        for i, item in enumerate(raw):
            _walk(item, t.item_type, f"{path}[{i}]", out)


def find_unknown_fields(raw: Any, typ: type) -> list[str]:
    """Paths of keys in a decoded manifest that ``typ`` does not declare, in document order, spelled as
    Kubernetes' strict decoder spells them (``spec.containers[0].imagee``)."""
    out: list[str] = []
    _walk(raw, _type_info(typ), "", out)
    return out
