"""The ``pea`` command: kubectl's everyday verbs against a peapod (or any Kubernetes) API server, and
``pea controlplane`` to run the server itself.

``main`` is the console entry point; ``run`` does the work and takes its output streams, so tests call
it inside their own event loop. Every failure ends as one line on stderr and exit code 1 (``error: ...``
for bad input, ``Error from server (Reason): ...`` for the server's refusals), never a traceback.

Arguments are parsed in two steps so that options may come anywhere, as with kubectl: the command is
the first word that is not an option (global options such as ``-s URL`` may come before it), and the
rest is parsed by that command's own parser with options and positionals intermixed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import msgspec

from controlplane.api.registry import ResourceInfo, resolve
from controlplane.client import ApiError, Client, ClientConfig, ClientError, NotFound, load_config, path_for
from controlplane.client.apply import ApplyOptions, field_validation
from controlplane.client.config import default_kubeconfig
from controlplane.client.config import write_kubeconfig as _write_kubeconfig
from controlplane.client.manifests import Manifest, ManifestError, load, resolve_namespace, resource_info

from . import daemons, expose, images, logs, nodes, tokens, up
from . import exec as exec_command
from .apply import apply
from .describe import describe
from .printers import (
    TableOptions,
    TableWriter,
    as_list,
    error_line,
    resource_name,
    table_rows,
    to_json,
    to_yaml,
)
from .security_flags import security_options, security_settings

if TYPE_CHECKING:
    from controlplane.server.controlplane import ControlPlane

__all__ = ["main", "run"]

OUTPUTS = ("wide", "yaml", "json", "name")
ALL_KINDS = ("pods", "replicationcontrollers", "services")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class UsageError(Exception):
    """Bad input on the command line: printed as ``error: <message>``."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage problem as an exception instead of exiting with status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# --- entry points --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``sys.exit(main())``."""
    try:
        return asyncio.run(run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


async def run(argv: list[str], stdout: TextIO, stderr: TextIO, *, stdin: TextIO | None = None) -> int:
    """Run one ``pea`` command line; returns the exit code."""
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            parsed = _parse(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if parsed is None:
        print(_HELP, file=stdout, end="")
        return 0
    command, args = parsed
    ctx = _Context(args, stdout, stderr, stdin if stdin is not None else sys.stdin)
    try:
        return await command.handler(ctx)
    except BrokenPipeError:
        raise  # the reader of our output went away (``pea get pods | head``): main() ends quietly
    except (UsageError, ManifestError, ValueError, OSError) as exc:
        print(error_line(exc), file=stderr)
    except ClientError as exc:
        print(error_line(exc, server=ctx.server_url), file=stderr)
    except Exception as exc:  # a bug rather than bad input; still one line, naming what went wrong
        print(
            f"error: unexpected {type(exc).__name__}: {error_line(exc).removeprefix('error: ')}", file=stderr
        )
    return 1


# --- parsing -------------------------------------------------------------------------------------

_HELP = """\
pea controls a peapod cluster (and talks to any Kubernetes API server, like kubectl).

Commands:
  apply         Apply manifests: create objects or patch them to match (-f FILE|DIR|-)
  create        Create objects from manifests, or a configmap or namespace
  get           List objects as a table, or print them as YAML, JSON or names
  describe      Show one object in detail, with its events
  delete        Delete objects by name, label selector or manifest
  scale         Set the replicas of a replication controller
  expose        Make a Service for a replication controller, pod or Service
  cordon        Mark a node unschedulable (uncordon: schedulable again)
  drain         Cordon a node and evict its pods, waiting until they are gone
  label         Add, change or remove labels
  annotate      Add, change or remove annotations
  logs          Print a container's output (-f follows it)
  exec          Run a command in a container (-i stdin, -t terminal): pea exec POD -- CMD
  config        Write a kubeconfig for pea and kubectl (config write)
  token         Make a node's token for an agent on another machine (token create-node NAME)
  controlplane  Run the control plane (API server, scheduler, controllers)
  controller-manager  Run the controllers alone against an API server (-s URL)
  agent         Run the node agent: register this machine and run its pods on Podman
  hollow-nodes  Run simulated nodes in one process (scale tests; no containers)
  image         Send an image archive to nodes through their agents (image load FILE)
  tui           Open the full-screen dashboard (--readonly, -n NS or -A)
  up            Run a local cluster with the guestbook example in one process (--headless)
  down          Stop what pea up runs (--purge also removes its data, pods, images and rules)

Global options: -s/--server URL, --token TOKEN, --kubeconfig PATH, -n/--namespace NS,
  --certificate-authority FILE, --insecure-skip-tls-verify
Use "pea <command> --help" for a command's options.
"""

_GLOBAL_WITH_VALUE = (
    "-s",
    "--server",
    "--token",
    "--kubeconfig",
    "-n",
    "--namespace",
    "--certificate-authority",
)


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    setup: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[_Context], Awaitable[int]]
    client: bool = True


def _parse(argv: Sequence[str]) -> tuple[_Command, argparse.Namespace] | None:
    name, rest = _split_command(argv)
    if name is None:
        return None
    command = _COMMANDS[name]
    parser = _Parser(prog=f"pea {name}", description=command.help)
    if command.client:
        _add_global_options(parser)
    command.setup(parser)
    return command, parser.parse_intermixed_args(rest)


def _split_command(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The command word and everything else; global options may come before the command."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            return None, []
        if token.startswith("-"):
            i += 2 if token in _GLOBAL_WITH_VALUE else 1
            continue
        if token not in _COMMANDS:
            raise UsageError(f'unknown command "{token}" for "pea"')
        return token, [*argv[:i], *argv[i + 1 :]]
    if argv:
        raise UsageError('no command given; run "pea --help" for the list of commands')
    return None, []


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection")
    g.add_argument("-s", "--server", help="the API server URL (default: kubeconfig, then $PEA_SERVER)")
    g.add_argument("--token", help="bearer token for the API server")
    g.add_argument("--kubeconfig", help="path of the kubeconfig file")
    g.add_argument("-n", "--namespace", help="the namespace (default: the kubeconfig's)")
    g.add_argument(
        "--certificate-authority",
        metavar="FILE",
        help="a CA certificate (PEM) to check an https server with (default: the kubeconfig's)",
    )
    g.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        help="do not check the server's certificate (insecure: anyone in between can read the token)",
    )


@dataclass
class _Context:
    """One invocation: parsed arguments, output streams and (lazily) the connection settings."""

    args: argparse.Namespace
    out: TextIO
    err: TextIO
    stdin: TextIO
    _config: ClientConfig | None = field(default=None, init=False)

    @property
    def config(self) -> ClientConfig:
        if self._config is None:
            args = self.args
            self._config = load_config(
                getattr(args, "server", None),
                getattr(args, "token", None),
                getattr(args, "kubeconfig", None),
                certificate_authority=getattr(args, "certificate_authority", None),
                insecure_skip_tls_verify=getattr(args, "insecure_skip_tls_verify", False),
            )
        return self._config

    @property
    def server_url(self) -> str | None:
        try:
            return self.config.server
        except ValueError:
            return None

    @property
    def namespace(self) -> str:
        return getattr(self.args, "namespace", None) or self.config.namespace

    @property
    def explicit_namespace(self) -> bool:
        return bool(getattr(self.args, "namespace", None))

    def client(self) -> Client:
        def warn(message: str) -> None:
            print(f"Warning: {message}", file=self.err)

        config = self.config
        return Client(config.server, config.token, user_agent="pea", on_warning=warn, verify=config.verify)


# --- shared helpers ------------------------------------------------------------------------------


def _kind(text: str) -> ResourceInfo:
    info = resolve(text)
    if info is None:
        raise UsageError(f'the server doesn\'t have a resource type "{text}"')
    return info


def _kind_word(info: ResourceInfo) -> str:
    """``pod``, ``replicationcontroller``: how kubectl names a kind in ``pod "x" deleted``."""
    return info.kind.lower() + (f".{info.group}" if info.group else "")


def _targets(words: Sequence[str]) -> list[tuple[ResourceInfo, list[str]]]:
    """``KIND[,KIND] [NAME...]`` or ``KIND/NAME...`` as kinds with their names, in order."""
    if not words:
        raise UsageError(
            "you must specify the type of resource; e.g. pods, replicationcontrollers (rc), services (svc), "
            "endpoints (ep), nodes (no), namespaces (ns), configmaps (cm), secrets, events (ev)"
        )
    if "/" in words[0]:
        grouped: dict[str, tuple[ResourceInfo, list[str]]] = {}
        for word in words:
            kind, sep, name = word.partition("/")
            if not sep or not name:
                raise UsageError(
                    f"there is no need to specify a resource type as a separate argument when passing "
                    f'arguments in resource/name form (e.g. "pea get resource/<name>" instead of '
                    f'"pea get resource resource/<name>"); got "{word}"'
                )
            info = _kind(kind)
            grouped.setdefault(info.plural, (info, []))[1].append(name)
        return list(grouped.values())
    kinds: list[ResourceInfo] = []
    for part in words[0].split(","):
        for text in ALL_KINDS if part == "all" else (part,):
            info = _kind(text)
            if info not in kinds:
                kinds.append(info)
    names = list(words[1:])
    for name in names:
        if "/" in name:
            raise UsageError(
                f'arguments in resource/name form must have a single resource and name: "{name}"'
            )
    return [(info, names) for info in kinds]


def _ns_for(ctx: _Context, info: ResourceInfo, all_namespaces: bool = False) -> str | None:
    if not info.namespaced or all_namespaces:
        return None
    return ctx.namespace


def _no_resources(ctx: _Context, namespaced: bool, all_namespaces: bool) -> None:
    if namespaced and not all_namespaces:
        print(f"No resources found in {ctx.namespace} namespace.", file=ctx.err)
    else:
        print("No resources found", file=ctx.err)


def _load_manifests(ctx: _Context, *, allow_generate_name: bool = False) -> list[Manifest]:
    manifests = load(
        ctx.args.filename,
        recursive=ctx.args.recursive,
        stdin=ctx.stdin,
        allow_generate_name=allow_generate_name,
    )
    if not manifests:
        raise UsageError("no objects passed to " + ctx.args.command_name)
    return manifests


def _validation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--validate",
        nargs="?",
        const="strict",
        default="strict",
        help="strict (default), warn or ignore: what the server does with unknown or duplicate fields",
    )
    parser.add_argument(
        "--dry-run",
        nargs="?",
        const="server",
        default="none",
        choices=("none", "server"),
        help="with 'server', the server checks and reports the change without persisting it",
    )


def _file_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "-f", "--filename", action="append", required=required, help="a manifest file, directory or - (stdin)"
    )
    parser.add_argument("-R", "--recursive", action="store_true", help="read directories recursively")


# --- apply / create ------------------------------------------------------------------------------


def _setup_apply(p: argparse.ArgumentParser) -> None:
    _file_options(p, required=True)
    _validation_options(p)
    p.add_argument(
        "--watch",
        action="store_true",
        help="follow the directory: apply on every change and prune what its files no longer define",
    )
    p.add_argument(
        "--self-heal",
        nargs="?",
        type=float,
        const=180.0,
        default=None,
        metavar="SECONDS",
        help="with --watch, re-apply everything every SECONDS (default 180) to revert hand edits",
    )
    p.add_argument(
        "--prune",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --watch, delete objects whose manifests are gone (default on)",
    )
    p.add_argument(
        "--manifest-id",
        metavar="ID",
        help="with --watch, the label value marking this directory's objects (default: a hash of its path)",
    )
    p.set_defaults(command_name="apply")


async def _apply(ctx: _Context) -> int:
    args = ctx.args
    options = ApplyOptions(
        namespace=ctx.namespace,
        enforce_namespace=ctx.explicit_namespace,
        field_validation=field_validation(args.validate),
        dry_run=args.dry_run == "server",
    )
    if args.watch:
        return await _apply_watch(ctx, options)
    for flag, value in (
        ("--self-heal", args.self_heal),
        ("--prune", args.prune),
        ("--manifest-id", args.manifest_id),
    ):
        if value is not None:
            raise UsageError(f"{flag} only works with --watch")
    manifests = _load_manifests(ctx)
    async with ctx.client() as client:
        ok = await apply(client, manifests, options, ctx.out, ctx.err)
    return 0 if ok else 1


async def _apply_watch(ctx: _Context, options: ApplyOptions) -> int:
    """``pea apply -f DIR --watch``: follow one directory until Ctrl-C (exit 0)."""
    from controlplane.client.dirsync import DirectorySync

    args = ctx.args
    if options.dry_run:
        raise UsageError("--watch cannot be combined with --dry-run")
    if len(args.filename) != 1 or not await asyncio.to_thread(os.path.isdir, args.filename[0]):
        raise UsageError("--watch needs exactly one -f DIRECTORY")
    with daemons.stop_signals() as stop:
        async with ctx.client() as client:
            follower = DirectorySync(
                client,
                args.filename[0],
                options=options,
                prune=args.prune is not False,
                self_heal=args.self_heal,
                manifest_id=args.manifest_id,
                out=ctx.out,
                err=ctx.err,
                format_error=lambda exc, context: error_line(exc, context, server=client.server),
            )
            await follower.run(stop)
    return 0


def _setup_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", help="configmap (cm) or namespace (ns); omit with -f")
    p.add_argument("name", nargs="?", help="the name of the configmap or namespace")
    _file_options(p, required=False)
    _validation_options(p)
    p.add_argument(
        "--from-file", action="append", default=[], metavar="[KEY=]PATH", help="configmap data from a file"
    )
    p.add_argument(
        "--from-literal", action="append", default=[], metavar="KEY=VALUE", help="configmap data from a value"
    )
    p.set_defaults(command_name="create")


async def _create(ctx: _Context) -> int:
    args = ctx.args
    if args.filename:
        if args.what:
            raise UsageError("use either -f or a resource type (configmap, namespace), not both")
        return await _create_from_files(ctx)
    if not args.what:
        raise UsageError("must specify one of -f or a resource type: configmap NAME, namespace NAME")
    info = _kind(args.what)
    if info.kind not in ("ConfigMap", "Namespace"):
        raise UsageError(f'"pea create {args.what}" is not supported: use configmap, namespace or -f')
    if not args.name:
        raise UsageError(f"NAME is required: pea create {info.singular} NAME")
    meta: dict[str, Any] = {"name": args.name}
    body: dict[str, Any] = {"apiVersion": "v1", "kind": info.kind, "metadata": meta}
    if info.kind == "ConfigMap":
        data, binary = _configmap_data(args.name, args.from_literal, args.from_file)
        if data:
            body["data"] = data
        if binary:
            body["binaryData"] = binary
    elif args.from_literal or args.from_file:
        raise UsageError("--from-literal and --from-file only apply to configmaps")
    ns = _ns_for(ctx, info)
    if ns:
        meta["namespace"] = ns
    async with ctx.client() as client:
        await client.create_raw(
            info, body, ns, field_validation=field_validation(args.validate), dry_run=args.dry_run == "server"
        )
    suffix = " (server dry run)" if args.dry_run == "server" else ""
    print(f"{resource_name(info, args.name)} created{suffix}", file=ctx.out)
    return 0


async def _create_from_files(ctx: _Context) -> int:
    args = ctx.args
    manifests = _load_manifests(ctx, allow_generate_name=True)
    mode = field_validation(args.validate)
    dry_run = args.dry_run == "server"
    suffix = " (server dry run)" if dry_run else ""
    ok = True
    async with ctx.client() as client:
        for m in manifests:
            try:
                info = resource_info(m)
                ns = resolve_namespace(m, ctx.namespace, ctx.explicit_namespace) if info.namespaced else None
                body = dict(m.object)
                created = await client.create_raw(info, body, ns, field_validation=mode, dry_run=dry_run)
            except ManifestError as exc:
                print(error_line(exc), file=ctx.err)
                ok = False
                continue
            except ClientError as exc:
                print(
                    error_line(exc, f'error when creating "{m.source}"', server=client.server), file=ctx.err
                )
                ok = False
                continue
            name = (created.get("metadata") or {}).get("name") or m.name
            print(f"{resource_name(info, name)} created{suffix}", file=ctx.out)
    return 0 if ok else 1


def _configmap_data(
    name: str, literals: list[str], files: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """``--from-literal`` and ``--from-file`` as data (UTF-8 text) and binaryData (anything else)."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}

    def add(key: str, content: bytes | str) -> None:
        if not _CONFIG_KEY.match(key):
            raise UsageError(
                f'"{key}" is not a valid key name for a ConfigMap: a valid config key must consist of '
                "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', "
                "regex used for validation is '[-._a-zA-Z0-9]+')"
            )
        if key in data or key in binary:
            raise UsageError(
                f'cannot add key "{key}", another key by that name already exists in Data '
                f'for ConfigMap "{name}"'
            )
        if isinstance(content, str):
            data[key] = content
            return
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(content).decode()

    for literal in literals:
        key, sep, value = literal.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid literal source {literal}, expected key=value")
        add(key, value)
    for source in files:
        key, sep, path_text = source.partition("=")
        if not sep:
            key, path_text = "", source
        if not path_text:
            raise UsageError(f'invalid file source "{source}", expected [key=]path')
        path = Path(path_text)
        if not path.exists():
            raise UsageError(f'the path "{path_text}" does not exist')
        if path.is_dir():
            if key:
                raise UsageError(f'cannot give a key name for a directory path: "{source}"')
            for entry in sorted(path.iterdir(), key=lambda e: e.name):
                if entry.is_file() and not entry.name.startswith("."):
                    add(entry.name, entry.read_bytes())
        else:
            add(key or path.name, path.read_bytes())
    return data, binary


# --- get -----------------------------------------------------------------------------------------


def _setup_get(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="KIND[,KIND] [NAME...] | KIND/NAME...")
    p.add_argument("-o", "--output", help="wide, yaml, json or name")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    p.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-w", "--watch", action="store_true", help="after listing, print changes as they happen")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--no-headers", action="store_true", help="leave out the header line")


async def _get(ctx: _Context) -> int:
    args = ctx.args
    if args.output is not None and args.output not in OUTPUTS:
        raise UsageError(
            f'unable to match a printer suitable for the output format "{args.output}", '
            f"allowed formats are: {','.join(sorted(OUTPUTS))}"
        )
    targets = _targets(args.args)
    async with ctx.client() as client:
        if args.watch:
            if len(targets) != 1 or len(targets[0][1]) > 1:
                raise UsageError("watch is only supported on individual resources and resource collections")
            return await _watch(ctx, client, *targets[0])
        if args.output in ("yaml", "json", "name"):
            return await _get_objects(ctx, client, targets)
        return await _get_tables(ctx, client, targets)


async def _get_tables(ctx: _Context, client: Client, targets: list[tuple[ResourceInfo, list[str]]]) -> int:
    args = ctx.args
    several = len(targets) > 1
    printed = False
    failed = False
    for info, names in targets:
        ns = _ns_for(ctx, info, args.all_namespaces)
        tables = []
        if names:
            for name in names:
                try:
                    tables.append(await client.table(info, ns, name))
                except NotFound as exc:
                    print(error_line(exc), file=ctx.err)
                    failed = True
        else:
            tables.append(
                await client.table(info, ns, label_selector=args.selector, field_selector=args.field_selector)
            )
        options = TableOptions(
            wide=args.output == "wide",
            all_namespaces=args.all_namespaces and info.namespaced,
            show_labels=args.show_labels,
            kind_prefix=_kind_word(info) if several else None,
        )
        rows = []
        for i, table in enumerate(tables):
            rows.extend(table_rows(table, options, header=i == 0 and not args.no_headers))
        if not any(t.rows for t in tables):
            continue
        if printed:
            ctx.out.write("\n")
        ctx.out.write(TableWriter().render(rows))
        printed = True
    if not printed and not failed:
        namespaced = any(info.namespaced for info, _ in targets)
        _no_resources(ctx, namespaced, args.all_namespaces)
    return 1 if failed else 0


async def _list_raw(
    client: Client, info: ResourceInfo, ns: str | None, label_selector: str | None, field_selector: str | None
) -> list[dict[str, Any]]:
    params = {"labelSelector": label_selector, "fieldSelector": field_selector}
    resp = await client.request("GET", path_for(info, ns), params=params)
    data = msgspec.json.decode(resp.content)
    items = data.get("items") or [] if isinstance(data, dict) else []
    for item in items:
        # Items of a list carry kind and apiVersion here; be safe with servers that leave them out.
        if isinstance(item, dict):
            item.setdefault("apiVersion", info.api_version)
            item.setdefault("kind", info.kind)
    return list(items)


async def _get_objects(ctx: _Context, client: Client, targets: list[tuple[ResourceInfo, list[str]]]) -> int:
    args = ctx.args
    objects: list[tuple[ResourceInfo, dict[str, Any]]] = []
    failed = False
    single = len(targets) == 1 and len(targets[0][1]) == 1
    for info, names in targets:
        ns = _ns_for(ctx, info, args.all_namespaces)
        if names:
            for name in names:
                try:
                    objects.append((info, await client.get_raw(info, name, ns)))
                except NotFound as exc:
                    print(error_line(exc), file=ctx.err)
                    failed = True
        else:
            for item in await _list_raw(client, info, ns, args.selector, args.field_selector):
                objects.append((info, item))
    if args.output == "name":
        for info, obj in objects:
            print(resource_name(info, (obj.get("metadata") or {}).get("name", "")), file=ctx.out)
        if not objects and not failed:
            _no_resources(ctx, any(i.namespaced for i, _ in targets), args.all_namespaces)
        return 1 if failed else 0
    if single and not objects:
        return 1
    doc: Any = objects[0][1] if single else as_list([obj for _, obj in objects])
    ctx.out.write(to_yaml(doc) if args.output == "yaml" else to_json(doc))
    return 1 if failed else 0


async def _watch(ctx: _Context, client: Client, info: ResourceInfo, names: list[str]) -> int:
    """List, then print each change as a row under the same header until interrupted."""
    args = ctx.args
    ns = _ns_for(ctx, info, args.all_namespaces)
    field_selector = args.field_selector
    if names:
        by_name = f"metadata.name={names[0]}"
        field_selector = f"{field_selector},{by_name}" if field_selector else by_name
    table = await client.table(info, ns, label_selector=args.selector, field_selector=field_selector)
    options = TableOptions(
        wide=args.output == "wide",
        all_namespaces=args.all_namespaces and info.namespaced,
        show_labels=args.show_labels,
    )
    writer = TableWriter()
    header_done = args.no_headers
    if table.rows:
        ctx.out.write(writer.render(table_rows(table, options, header=not header_done)))
        header_done = True
    else:
        _no_resources(ctx, info.namespaced, args.all_namespaces)
    ctx.out.flush()
    async for _, change in client.watch_table(
        info,
        ns,
        resource_version=table.metadata.resource_version,
        label_selector=args.selector,
        field_selector=field_selector,
    ):
        if not change.rows:
            continue
        ctx.out.write(writer.render(table_rows(change, options, header=not header_done)))
        header_done = True
        ctx.out.flush()
    return 0


# --- describe ------------------------------------------------------------------------------------


def _setup_describe(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="+", metavar="KIND [NAME...] | KIND/NAME")
    p.add_argument("-l", "--selector", help="describe the objects matching this label selector")


async def _describe(ctx: _Context) -> int:
    args = ctx.args
    targets = _targets(args.args)
    failed = False
    first = True
    async with ctx.client() as client:
        for info, names in targets:
            ns = _ns_for(ctx, info)
            if not names:
                objs = await client.list(info.type, ns, label_selector=args.selector)
                names = [o.metadata.name or "" for o in objs.items]  # type: ignore[attr-defined]
                if not names:
                    _no_resources(ctx, info.namespaced, False)
            for name in names:
                try:
                    text = await describe(client, info, name, ns)
                except NotFound as exc:
                    print(error_line(exc), file=ctx.err)
                    failed = True
                    continue
                if not first:
                    ctx.out.write("\n\n")
                ctx.out.write(text)
                first = False
    return 1 if failed else 0


# --- delete --------------------------------------------------------------------------------------


def _setup_delete(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="KIND NAME... | KIND/NAME...")
    _file_options(p, required=False)
    p.add_argument("-l", "--selector", help="delete the objects matching this label selector")
    p.add_argument("--all", action="store_true", help="delete every object of the kind in the namespace")
    p.add_argument("--grace-period", type=int, default=-1, help="seconds a pod gets to stop (-1: its own)")
    p.add_argument("--now", action="store_true", help="signal the pods to stop at once (grace period 1)")
    p.add_argument("--force", action="store_true", help="with --grace-period=0: remove without waiting")
    p.add_argument("--ignore-not-found", action="store_true", help="treat a missing object as deleted")
    p.add_argument(
        "--cascade",
        default="background",
        metavar="background|orphan|foreground",
        help="what happens to the dependents (e.g. an RC's pods): deleted after the owner (background, "
        "the default), before it (foreground) or kept without the owner (orphan)",
    )
    p.set_defaults(command_name="delete")


def _grace(args: argparse.Namespace, err: TextIO) -> int | None:
    """kubectl's rules: --now is 1 second; 0 needs --force (else it becomes 1); --force alone is 0."""
    grace: int = args.grace_period
    if args.now:
        if grace != -1:
            raise UsageError("--now and --grace-period cannot be specified together")
        grace = 1
    if grace == 0 and not args.force:
        grace = 1
    if args.force and grace < 0:
        grace = 0
    if args.force and grace == 0:
        print(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has been "
            "terminated. The resource may continue to run on the cluster indefinitely.",
            file=err,
        )
    return None if grace < 0 else grace


async def _delete(ctx: _Context) -> int:
    args = ctx.args
    # kubectl's --cascade: a propagation policy, or the deprecated booleans.
    cascade = str(args.cascade).lower()
    policies = {"background": "Background", "orphan": "Orphan", "foreground": "Foreground"}
    if cascade in ("true", "false"):
        replacement = "background" if cascade == "true" else "orphan"
        print(
            f"warning: --cascade={cascade} is deprecated (boolean value) and can be replaced with "
            f"--cascade={replacement}.",
            file=ctx.err,
        )
        cascade = replacement
    if cascade not in policies:
        raise UsageError(
            f'invalid cascade value ({args.cascade}). Must be "background", "foreground", or "orphan".'
        )
    policy = policies[cascade]
    grace = _grace(args, ctx.err)
    verb = "force deleted" if args.force and grace == 0 else "deleted"
    items: list[tuple[ResourceInfo, str, str | None, str | None]] = []  # info, name, namespace, source
    if args.filename:
        if args.args:
            raise UsageError("use either -f or resource names, not both")
        for m in _load_manifests(ctx):
            info = resource_info(m)
            ns = resolve_namespace(m, ctx.namespace, ctx.explicit_namespace) if info.namespaced else None
            items.append((info, m.name, ns, m.source))
    ok = True
    async with ctx.client() as client:
        if not args.filename:
            targets = _targets(args.args)
            for info, names in targets:
                ns = _ns_for(ctx, info)
                if names:
                    if args.selector or args.all:
                        raise UsageError("name cannot be provided when a selector or --all is specified")
                    items.extend((info, name, ns, None) for name in names)
                elif args.selector or args.all:
                    found = await client.list(info.type, ns, label_selector=args.selector)
                    items.extend((info, o.metadata.name or "", ns, None) for o in found.items)  # type: ignore[attr-defined]
                else:
                    raise UsageError("resource(s) were provided, but no name was specified")
            if not items:
                _no_resources(ctx, any(i.namespaced for i, _ in targets), False)
                return 0
        for info, name, ns, source in items:
            try:
                await client.delete(
                    info.type, name, ns, grace_period_seconds=grace, propagation_policy=policy
                )
            except NotFound as exc:
                if args.ignore_not_found:
                    continue
                context = f'error when deleting "{source}"' if source else None
                print(error_line(exc, context), file=ctx.err)
                ok = False
                continue
            except ApiError as exc:
                print(error_line(exc, f'error when deleting "{source}"' if source else None), file=ctx.err)
                ok = False
                continue
            print(f'{_kind_word(info)} "{name}" {verb}', file=ctx.out)
    return 0 if ok else 1


# --- scale ---------------------------------------------------------------------------------------


def _setup_scale(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="+", metavar="rc NAME | rc/NAME")
    p.add_argument("--replicas", type=int, required=True, help="the new number of replicas")


async def _scale(ctx: _Context) -> int:
    args = ctx.args
    if args.replicas < 0:
        raise UsageError(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        )
    targets = _targets(args.args)
    ok = True
    async with ctx.client() as client:
        for info, names in targets:
            if "scale" not in info.subresources:
                raise UsageError(f"{info.plural} cannot be scaled: only replicationcontrollers (rc) can")
            if not names:
                raise UsageError("resource(s) were provided, but no name was specified")
            for name in names:
                try:
                    await client.scale(info.type, name, args.replicas, _ns_for(ctx, info))
                except ApiError as exc:
                    print(error_line(exc), file=ctx.err)
                    ok = False
                    continue
                print(f"{resource_name(info, name)} scaled", file=ctx.out)
    return 0 if ok else 1


# --- label / annotate ----------------------------------------------------------------------------


def _setup_label(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="+", metavar="KIND NAME KEY=VALUE... KEY-...")
    p.add_argument("--overwrite", action="store_true", help="allow changing a key that already has a value")


def _split_changes(words: Sequence[str]) -> tuple[list[str], dict[str, str | None]]:
    """Object words, then ``k=v`` (set) and ``k-`` (remove) changes."""
    objects: list[str] = []
    changes: dict[str, str | None] = {}
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if not key:
                raise UsageError(f'invalid key=value "{word}": the key is empty')
            changes[key] = value
        elif word.endswith("-") and objects:
            changes[word[:-1]] = None
        elif changes:
            raise UsageError(f'invalid argument "{word}": expected KEY=VALUE or KEY- after the first change')
        else:
            objects.append(word)
    if not changes:
        raise UsageError("at least one KEY=VALUE or KEY- is required")
    return objects, changes


def _metadata_command(field_name: str, verb: str) -> Callable[[_Context], Awaitable[int]]:
    """``label`` and ``annotate``: the same merge patch on ``metadata.labels`` or ``.annotations``."""

    async def handler(ctx: _Context) -> int:
        words, changes = _split_changes(ctx.args.args)
        targets = _targets(words)
        ok = True
        async with ctx.client() as client:
            for info, names in targets:
                if not names:
                    raise UsageError(
                        "one or more resources must be specified as <resource> <name> or <resource>/<name>"
                    )
                ns = _ns_for(ctx, info)
                for name in names:
                    try:
                        result = await _patch_metadata(ctx, client, info, name, ns, field_name, changes, verb)
                    except ApiError as exc:
                        print(error_line(exc), file=ctx.err)
                        ok = False
                        continue
                    print(f"{resource_name(info, name)} {result}", file=ctx.out)
        return 0 if ok else 1

    return handler


async def _patch_metadata(
    ctx: _Context,
    client: Client,
    info: ResourceInfo,
    name: str,
    ns: str | None,
    field_name: str,
    changes: dict[str, str | None],
    verb: str,
) -> str:
    live = await client.get_raw(info, name, ns)
    current: dict[str, str] = (live.get("metadata") or {}).get(field_name) or {}
    patch: dict[str, str | None] = {}
    for key, value in changes.items():
        if value is None:
            if key in current:
                patch[key] = None
            else:
                print(f'{field_name[:-1]} "{key}" not found.', file=ctx.out)
            continue
        if key in current and current[key] != value and not ctx.args.overwrite:
            raise UsageError(f"'{key}' already has a value ({current[key]}), and --overwrite is false")
        if current.get(key) != value:
            patch[key] = value
    if not patch:
        return f"not {verb}"
    # Like kubectl, no resourceVersion: a controller updating status meanwhile must not make this fail.
    await client.patch_raw(info, name, {"metadata": {field_name: patch}}, ns, patch_type="merge")
    if all(v is None for v in patch.values()) and verb == "labeled":
        return "unlabeled"
    return verb


# --- config / controlplane -----------------------------------------------------------------------


def _setup_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("write",), help="write: save --server/--token in the kubeconfig")


async def _config(ctx: _Context) -> int:
    args = ctx.args
    path = Path(args.kubeconfig) if args.kubeconfig else default_kubeconfig()
    config = ctx.config
    ca = config.certificate_authority_data
    if ca is None and config.certificate_authority:
        ca = await asyncio.to_thread(Path(config.certificate_authority).read_bytes)  # OSError: one line
    _write_kubeconfig(
        path,
        config.server,
        config.token,
        certificate_authority_data=ca,
        insecure_skip_tls_verify=config.insecure_skip_tls_verify,
    )
    print(
        f"wrote {path} for {config.server} (use it with kubectl: KUBECONFIG={path} kubectl get pods)",
        file=ctx.out,
    )
    return 0


def _setup_controlplane(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the state database lives (default ~/.local/share/peapod)")
    p.add_argument("--listen", default="127.0.0.1:6443", metavar="HOST:PORT", help="address to serve on")
    p.add_argument("--token-file", help='static token file (token,user,uid,"groups"); needed off loopback')
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS: a cluster CA and a serving certificate are made in DATA/pki on the first start "
        "(clients trust DATA/pki/ca.crt)",
    )
    p.add_argument(
        "--advertise-address",
        metavar="IP",
        help="the address put in the kubernetes Service's Endpoints (default: the --listen host)",
    )
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", help="the range node pod CIDRs are taken from")
    p.add_argument(
        "--service-cluster-ip-range",
        default="10.254.0.0/16",
        metavar="CIDR",
        help="the range Service cluster IPs are taken from (its first address is the kubernetes Service's)",
    )
    p.add_argument(
        "--service-node-port-range",
        default="30000-32767",
        metavar="FIRST-LAST",
        help="the range of node ports of NodePort and LoadBalancer Services",
    )
    p.add_argument(
        "--cluster-dns",
        metavar="IP",
        help="the kube-system/kube-dns Service's cluster IP, the agents' --cluster-dns (default: the "
        "service range's 10th address, 10.254.0.10)",
    )
    p.add_argument(
        "--cluster-domain",
        default="cluster.local",
        help="the cluster's DNS domain, as the agents have it (default cluster.local)",
    )
    p.add_argument(
        "--event-ttl", type=float, default=3600.0, metavar="SECONDS", help="how long events are kept"
    )
    p.add_argument(
        "--history-seconds",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="keep at least this much change history for watches to resume from",
    )
    p.add_argument(
        "--history-revisions",
        type=int,
        default=10_000,
        metavar="N",
        help="and at least this many revisions of it",
    )
    p.add_argument("--no-scheduler", action="store_true", help="do not run the scheduler in this process")
    p.add_argument("--no-controllers", action="store_true", help="do not run the controllers in this process")
    p.add_argument(
        "--default-not-ready-toleration-seconds",
        type=int,
        default=300,
        metavar="SECONDS",
        help="tolerationSeconds new pods get for the node.kubernetes.io/not-ready NoExecute taint",
    )
    p.add_argument(
        "--default-unreachable-toleration-seconds",
        type=int,
        default=300,
        metavar="SECONDS",
        help="tolerationSeconds new pods get for the node.kubernetes.io/unreachable NoExecute taint",
    )
    p.add_argument(
        "--manifests",
        metavar="DIR",
        help="follow this directory of manifests: apply on change, prune what its files no longer define",
    )
    p.add_argument(
        "--manifests-self-heal",
        nargs="?",
        type=float,
        const=180.0,
        default=None,
        metavar="SECONDS",
        help="with --manifests, re-apply everything every SECONDS (default 180) to revert hand edits",
    )
    daemons.controller_options(p)
    security_options(p)


async def _controlplane(ctx: _Context) -> int:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    from controlplane.server.controlplane import ControlPlane, ControlPlaneError, Settings, default_data_dir

    args = ctx.args
    host, sep, port = args.listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f'--listen must be HOST:PORT, got "{args.listen}"')
    if args.manifests_self_heal is not None:
        if not args.manifests:
            raise UsageError("--manifests-self-heal only works with --manifests")
        if not args.manifests_self_heal > 0:
            raise UsageError("--manifests-self-heal must be more than 0 seconds")
    if args.advertise_address is not None:
        import ipaddress

        try:
            ipaddress.ip_address(args.advertise_address)
        except ValueError:
            raise UsageError(
                f'--advertise-address must be an IP address, got "{args.advertise_address}"'
            ) from None
    for flag in ("default_not_ready_toleration_seconds", "default_unreachable_toleration_seconds"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be 0 or more")
    cluster_dns = args.cluster_dns
    if cluster_dns is None:  # the range's 10th address, kubeadm's choice (a bad range is refused below)
        import ipaddress

        with contextlib.suppress(ValueError):
            cluster_dns = str(ipaddress.ip_network(args.service_cluster_ip_range).network_address + 10)
    settings = Settings(
        data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(),
        listen=args.listen,
        advertise_address=args.advertise_address,
        token_file=Path(args.token_file) if args.token_file else None,
        tls=args.tls,
        cluster_cidr=args.cluster_cidr,
        service_cluster_ip_range=args.service_cluster_ip_range,
        service_node_port_range=args.service_node_port_range,
        cluster_dns=cluster_dns or "",
        cluster_domain=args.cluster_domain,
        event_ttl=args.event_ttl,
        compact_keep_seconds=args.history_seconds,
        compact_keep_revisions=args.history_revisions,
        scheduler=not args.no_scheduler,
        controllers=not args.no_controllers,
        controller=daemons.controller_settings(args),
        default_not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds=args.default_unreachable_toleration_seconds,
        **security_settings(args),
    )
    try:
        cp = ControlPlane(settings)
    except ControlPlaneError as exc:
        raise UsageError(str(exc)) from None
    with daemons.stop_signals() as stop:
        try:
            await cp.start()
        except ControlPlaneError as exc:
            with contextlib.suppress(Exception):
                await cp.stop()
            raise UsageError(str(exc)) from None
        try:
            print(f"peapod control plane listening on {cp.url} (data in {settings.data_dir})", file=ctx.out)
            if cp.ca_file is not None:
                print(f"clients check its certificate with the CA {cp.ca_file}", file=ctx.out)
            ctx.out.flush()
            if args.manifests:
                await _follow_manifests(ctx, cp, Path(args.manifests), stop)
            else:
                await stop.wait()
            print("stopping", file=ctx.out)
        finally:
            await cp.stop()
    return 0


async def _follow_manifests(ctx: _Context, cp: ControlPlane, directory: Path, stop: asyncio.Event) -> None:
    """The control plane's own manifests folder (k3s style), followed until ``stop``."""
    from controlplane.client.dirsync import DirectorySync

    try:
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        print(f"warning: cannot create {directory}: {exc.strerror or exc}", file=ctx.err)
    url = cp.url
    verify = str(cp.ca_file) if cp.ca_file is not None else True
    async with Client(url, cp.admin_token, user_agent="pea-manifests", verify=verify) as client:
        follower = DirectorySync(
            client,
            directory,
            out=ctx.out,
            err=ctx.err,
            self_heal=ctx.args.manifests_self_heal,
            format_error=lambda exc, context: error_line(exc, context, server=url),
        )
        await follower.run(stop)


async def _agent(ctx: _Context) -> int:
    async with ctx.client() as client:
        return await daemons.run_agent(ctx.args, ctx.out, client)


async def _image(ctx: _Context) -> int:
    async with ctx.client() as client:
        return await images.run_image(ctx.args, ctx.out, ctx.err, client, ctx.config.token)


async def _logs(ctx: _Context) -> int:
    async with ctx.client() as client:
        return await logs.run_logs(ctx.args, ctx.out, ctx.err, client, ctx.namespace)


async def _exec(ctx: _Context) -> int:
    async with ctx.client() as client:
        return await exec_command.run_exec(ctx.args, ctx.out, ctx.err, ctx.stdin, client, ctx.namespace)


async def _controller_manager(ctx: _Context) -> int:
    async with ctx.client() as client:
        return await daemons.run_controller_manager(ctx.args, ctx.out, client)


async def _hollow(ctx: _Context) -> int:
    async with ctx.client() as client:
        return await daemons.run_hollow(ctx.args, ctx.out, client)


# --- tui ---------------------------------------------------------------------------------------


def _setup_tui(p: argparse.ArgumentParser) -> None:
    p.add_argument("-A", "--all-namespaces", action="store_true", help="start with every namespace listed")
    p.add_argument("--readonly", action="store_true", help="never change the cluster from the dashboard")


async def _tui(ctx: _Context) -> int:
    import logging

    from textual.logging import TextualHandler

    from .dashboard import PeapodApp  # Textual loads only for the dashboard

    # Log records (an informer retrying) go to Textual's devtools console, not over the screen.
    logging.basicConfig(level=logging.WARNING, handlers=[TextualHandler()], force=True)
    namespace = None if ctx.args.all_namespaces else ctx.namespace
    # No on_warning: a line printed on stderr would tear the full-screen display.
    config = ctx.config
    async with Client(config.server, config.token, user_agent="pea", verify=config.verify) as client:
        await PeapodApp(client, namespace, readonly=ctx.args.readonly).run_async()
    return 0


async def _up(ctx: _Context) -> int:
    return await up.run_up(ctx.args, ctx.out, ctx.err)


async def _down(ctx: _Context) -> int:
    return await up.run_down(ctx.args, ctx.out, ctx.err)


async def _token(ctx: _Context) -> int:
    return await tokens.run_token(ctx.args, ctx.out)


# --- the command table ---------------------------------------------------------------------------

_COMMANDS: dict[str, _Command] = {
    c.name: c
    for c in (
        _Command("apply", "Create or update objects to match manifests.", _setup_apply, _apply),
        _Command(
            "create", "Create objects from manifests, or a configmap or namespace.", _setup_create, _create
        ),
        _Command("get", "Print objects as a table, YAML, JSON or names.", _setup_get, _get),
        _Command("describe", "Show objects in detail, with their events.", _setup_describe, _describe),
        _Command("delete", "Delete objects by name, selector or manifest.", _setup_delete, _delete),
        _Command("scale", "Set the number of replicas of a replication controller.", _setup_scale, _scale),
        _Command("expose", "Make a Service for an rc, pod or service.", expose.setup_expose, expose.expose),
        _Command(
            "label", "Add, change or remove labels.", _setup_label, _metadata_command("labels", "labeled")
        ),
        _Command(
            "annotate",
            "Add, change or remove annotations.",
            _setup_label,
            _metadata_command("annotations", "annotated"),
        ),
        _Command("logs", "Print the output of a container of a pod.", logs.setup_logs, _logs),
        _Command("exec", "Run a command in a container of a pod.", exec_command.setup_exec, _exec),
        _Command("cordon", "Mark a node unschedulable.", nodes.setup_cordon, nodes.cordon),
        _Command("uncordon", "Mark a node schedulable again.", nodes.setup_cordon, nodes.uncordon),
        _Command("drain", "Cordon a node and evict its pods.", nodes.setup_drain, nodes.drain),
        _Command("config", "Write a kubeconfig for pea and kubectl.", _setup_config, _config),
        _Command(
            "token", "Make a node's token (token create-node NAME).", tokens.setup_token, _token, client=False
        ),
        _Command("controlplane", "Run the control plane.", _setup_controlplane, _controlplane, client=False),
        _Command("agent", "Run the node agent on this machine.", daemons.setup_agent, _agent),
        _Command(
            "controller-manager",
            "Run the controllers against an API server.",
            daemons.controller_options,
            _controller_manager,
        ),
        _Command("hollow-nodes", "Run simulated nodes (no containers).", daemons.setup_hollow, _hollow),
        _Command("image", "Send an image archive to nodes (image load FILE).", images.setup_image, _image),
        _Command("tui", "Open the full-screen dashboard.", _setup_tui, _tui),
        _Command(
            "up", "Run a local cluster (and an example) in one process.", up.setup_up, _up, client=False
        ),
        _Command(
            "down", "Stop what pea up runs (--purge: and remove it).", up.setup_down, _down, client=False
        ),
    )
}
