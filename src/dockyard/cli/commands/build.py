"""`dockyard build`: the context (less what .dockerignore excludes) as a tar to POST /build."""

from __future__ import annotations

import io
import json
import os
import secrets
import sys
import tarfile
import tempfile
from typing import IO, Any
from urllib.parse import urlencode

from dockyard.cli.args import F, Spec, UsageError
from dockyard.cli.client import CliError, Client, json_messages, read_chunks
from dockyard.cli.format import human_size

BUILD_SPEC = Spec(
    F("-t", "--tag", multi=True), F("-f", "--file", value=True), F("--build-arg", multi=True),
    F("--label", multi=True), F("--no-cache"), F("--pull"), F("-q", "--quiet"), F("--target", value=True),
    F("--network", value=True), F("--rm", value=True), F("--force-rm"), F("--iidfile", value=True),
    F("--platform", value=True),
)


def _pairs(values: list[str], environ: bool) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in values:
        key, sep, value = item.partition("=")
        out[key] = value if sep else (os.environ.get(key) if environ else "")
    return out


def _context_tar(context: str, dockerfile: str | None, stdin_dockerfile: bytes | None) -> tuple[IO[bytes], str, int]:
    """A spooled tar of the context; the Dockerfile's name inside it; the tar's size."""
    from dockyard.builder.dockerignore import IgnoreMatcher, read_patterns, walk_context

    ignore_path = os.path.join(context, ".dockerignore")
    patterns: list[str] = []
    if os.path.isfile(ignore_path):
        with open(ignore_path, encoding="utf-8") as handle:
            patterns = read_patterns(handle.read())
    name = "Dockerfile"
    extra: tuple[str, bytes] | None = None
    if stdin_dockerfile is not None:
        name = f"__dockerfile-{secrets.token_hex(8)}"
        extra = (name, stdin_dockerfile)
    elif dockerfile:
        full = os.path.abspath(dockerfile)
        root = os.path.abspath(context)
        if os.path.commonpath([full, root]) == root:
            name = os.path.relpath(full, root)
        else:  # outside the context: sent beside it under a private name, as docker does
            with open(full, "rb") as handle:
                extra = (f"__dockerfile-{secrets.token_hex(8)}", handle.read())
            name = extra[0]
    # the Dockerfile and .dockerignore are always sent (the daemon needs the first)
    matcher = IgnoreMatcher([p for p in patterns] + [f"!{name}", "!.dockerignore"])
    spool = tempfile.TemporaryFile()
    with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in walk_context(context, matcher):
            full = os.path.join(context, rel)
            info = tar.gettarinfo(full, arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(full, "rb") as handle:
                    tar.addfile(info, handle)
            elif info.isdir() or info.issym() or info.islnk():
                tar.addfile(info)
        if extra is not None:
            info = tarfile.TarInfo(extra[0])
            info.size, info.mode = len(extra[1]), 0o644
            tar.addfile(info, io.BytesIO(extra[1]))
    size = spool.tell()
    spool.seek(0)
    return spool, name, size


def cmd_build(client: Client, argv: list[str]) -> int:
    p = BUILD_SPEC.parse(argv)
    if len(p.positionals) != 1:
        raise UsageError('"build" requires exactly 1 argument.')
    context = p.positionals[0]
    if context.startswith(("http://", "https://", "git@", "git://")):
        raise CliError("dockyard build: remote contexts are not implemented (use a local directory)")
    stdin_dockerfile = sys.stdin.buffer.read() if p["file"] == "-" else None
    if context == "-":
        raise CliError("dockyard build: a context from stdin is not implemented (use a directory)")
    if not os.path.isdir(context):
        raise CliError(f'unable to prepare context: path "{context}" not found', 1)
    spool, dockerfile, size = _context_tar(context, None if p["file"] == "-" else p["file"], stdin_dockerfile)
    quiet = bool(p["quiet"])
    if not quiet:
        print(f"Sending build context to Dockyard daemon  {human_size(float(size))}")
    params: dict[str, Any] = {
        "dockerfile": dockerfile, "t": p["tag"] or None, "nocache": "1" if p["no_cache"] else None,
        "pull": "1" if p["pull"] else None, "q": "1" if quiet else None, "target": p["target"],
        "networkmode": p["network"], "forcerm": "1" if p["force_rm"] else None,
        "rm": p["rm"] if p["rm"] is not None else None, "platform": p["platform"],
        "buildargs": json.dumps(_pairs(p["build_arg"], True)) if p["build_arg"] else None,
        "labels": json.dumps(_pairs(p["label"], False)) if p["label"] else None,
    }
    query = urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
    with spool:
        resp = client.stream_upload("/build?" + query, read_chunks(spool), "application/x-tar")
    image_id = _follow(resp, quiet)
    if p["iidfile"]:
        with open(p["iidfile"], "w", encoding="utf-8") as handle:
            handle.write(image_id)
    if quiet:
        print(image_id)
    return 0


def _follow(resp: Any, quiet: bool) -> str:
    image_id = ""
    for msg in json_messages(resp):
        if isinstance(msg.get("aux"), dict) and msg["aux"].get("ID"):
            image_id = msg["aux"]["ID"]
        elif msg.get("stream") and not quiet:
            sys.stdout.write(msg["stream"])
            sys.stdout.flush()
        elif msg.get("status") and not quiet:
            ident = msg.get("id")
            sys.stdout.write((f"{ident}: " if ident else "") + msg["status"] + "\n")
    if not image_id:
        raise CliError("the build ended without an image", 1)
    return image_id
