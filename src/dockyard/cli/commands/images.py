"""Image commands: ls, rm, tag, inspect, history, save, load, import, pull, push, prune.

Pull and push send X-Registry-Auth from the credentials `dockyard login` saved (dockyard.cli.config)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from dockyard.cli.args import F, Spec, UsageError
from dockyard.cli.client import Client, CliError, DaemonError, filters_json, json_messages, q, qs, read_chunks
from dockyard.cli.format import ago, human_size, print_listing, short_id
from dockyard.cli.progress import Progress

CHUNK = 1 << 20


def _messages(resp: Any, out: IO[str], quiet: bool, label: str) -> None:
    """Read a JSON-lines progress stream; raise on an error line.

    On a terminal (stderr) the byte counts of every layer add up to one bar below the status
    lines; otherwise only the status lines are written, not each byte count."""
    bar = Progress(label)
    layers: dict[str, tuple[int, int]] = {}  # layer id -> (bytes so far, size)
    try:
        for msg in json_messages(resp):
            _show(msg, out, quiet, bar, layers)
    except CliError:
        if bar.done:
            bar.finish()
        raise
    if bar.done:
        bar.finish()


def _show(msg: dict[str, Any], out: IO[str], quiet: bool, bar: Progress, layers: dict[str, tuple[int, int]]) -> None:
    """One message: a layer's byte count feeds the bar; a status or stream line is written."""
    detail = msg.get("progressDetail") or {}
    if detail.get("current"):
        layers[str(msg.get("id"))] = (int(detail["current"]), int(detail.get("total") or 0))
        if not quiet:
            bar.set(sum(done for done, _ in layers.values()), sum(size for _, size in layers.values()) or None)
        return
    if quiet or not (msg.get("stream") or msg.get("status")):
        return
    bar.clear()
    if msg.get("stream"):
        out.write(msg["stream"])
    else:
        ident = msg.get("id")
        out.write((f"{ident}: " if ident else "") + msg["status"] + "\n")
    out.flush()
    bar.redraw()


def pull_image(client: Client, image: str, quiet: bool = False, out: IO[str] = sys.stdout) -> None:
    from dockyard.cli.commands.run import split_image
    from dockyard.cli.config import registry_auth_header

    name, tag = split_image(image)
    params = {"fromImage": name, "tag": tag}
    resp = client.raw("POST", "/images/create" + qs(params), headers={"X-Registry-Auth": registry_auth_header(name)})
    _messages(resp, out, quiet, f"Pulling {name}:{tag}")
    out.flush()


def cmd_pull(client: Client, argv: list[str]) -> int:
    p = Spec(F("-q", "--quiet"), F("-a", "--all-tags"), F("--platform", value=True)).parse(argv)
    if len(p.positionals) != 1:
        raise UsageError('"pull" requires exactly 1 argument.')
    try:
        pull_image(client, p.positionals[0], bool(p["quiet"]))
    except DaemonError as e:  # docker pull exits 1 on the daemon's errors (run and create keep 125)
        raise CliError(str(e), 1) from None
    if p["quiet"]:
        from dockyard.cli.commands.run import split_image

        name, tag = split_image(p.positionals[0])
        print(f"{name}:{tag}")
    return 0


def cmd_push(client: Client, argv: list[str]) -> int:
    p = Spec(F("-q", "--quiet"), F("-a", "--all-tags")).parse(argv)
    if len(p.positionals) != 1:
        raise UsageError('"push" requires exactly 1 argument.')
    from dockyard.cli.commands.run import split_image
    from dockyard.cli.config import registry_auth_header

    name, tag = split_image(p.positionals[0])
    try:
        resp = client.raw("POST", f"/images/{q(name)}/push?tag={q(tag)}",
                          headers={"X-Registry-Auth": registry_auth_header(name)})
    except DaemonError as e:  # like docker push: exit status 1
        raise CliError(str(e), 1) from None
    _messages(resp, sys.stdout, bool(p["quiet"]), f"Pushing {name}:{tag}")
    return 0


IMAGES_SPEC = Spec(F("-a", "--all"), F("-q", "--quiet"), F("--no-trunc"), F("-f", "--filter", multi=True),
                   F("--format", value=True), F("--digests"))


def image_records(images: list[dict[str, Any]], trunc: bool) -> list[dict[str, Any]]:
    records = []
    for img in images:
        tags = img.get("RepoTags") or ["<none>:<none>"]
        for ref in tags:
            repo, _, tag = ref.rpartition(":")
            records.append({
                "ID": short_id(img["Id"], trunc) if trunc else img["Id"],
                "Repository": repo, "Tag": tag,
                "CreatedSince": ago(float(img.get("Created", 0))),
                "CreatedAt": str(img.get("Created", "")),
                "Size": human_size(float(img.get("Size", 0))),
                "Digest": ((img.get("RepoDigests") or ["@<none>"])[0]).split("@")[-1],
                "Containers": str(img.get("Containers", "N/A")),
            })
    return records


def cmd_images(client: Client, argv: list[str]) -> int:
    p = IMAGES_SPEC.parse(argv)
    filters = list(p["filter"])
    if p.positionals:
        filters.append(f"reference={p.positionals[0]}")
    images = client.get("/images/json" + qs({"all": p["all"] or None, "filters": filters_json(filters)}))
    records = image_records(images, not p["no_trunc"])
    print_listing(records, p["quiet"], p["format"], ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                  ["Repository", "Tag", "ID", "CreatedSince", "Size"], unique=True)
    return 0


def cmd_rmi(client: Client, argv: list[str]) -> int:
    p = Spec(F("-f", "--force"), F("--no-prune")).parse(argv)
    if not p.positionals:
        raise UsageError('"rmi" requires at least 1 argument.')
    code = 0
    for name in p.positionals:
        try:
            result = client.delete(f"/images/{q(name)}" + qs({"force": p["force"] or None,
                                                                  "noprune": p["no_prune"] or None}))
        except DaemonError as e:
            print(e, file=sys.stderr)
            code = 1
            continue
        for item in result or []:
            for key, value in item.items():
                print(f"{key}: {value}")
    return code


def cmd_tag(client: Client, argv: list[str]) -> int:
    pos = Spec().parse(argv).positionals
    if len(pos) != 2:
        raise UsageError('"tag" requires exactly 2 arguments.')
    from dockyard.cli.commands.run import split_image

    repo, tag = split_image(pos[1])
    client.post(f"/images/{q(pos[0])}/tag" + qs({"repo": repo, "tag": tag}))
    return 0


def cmd_history(client: Client, argv: list[str]) -> int:
    p = Spec(F("-q", "--quiet"), F("--no-trunc"), F("-H", "--human", default=True), F("--format", value=True)).parse(argv)
    if len(p.positionals) != 1:
        raise UsageError('"history" requires exactly 1 argument.')
    trunc = not p["no_trunc"]
    records = []
    for layer in client.get(f"/images/{q(p.positionals[0])}/history"):
        ident = layer.get("Id", "<missing>")
        created_by = layer.get("CreatedBy", "")
        if trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        records.append({"ID": short_id(ident, trunc) if ident != "<missing>" else ident,
                        "CreatedSince": ago(float(layer.get("Created", 0))), "CreatedBy": created_by,
                        "Size": human_size(float(layer.get("Size", 0))), "Comment": layer.get("Comment", "")})
    print_listing(records, p["quiet"], p["format"], ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                  ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"])
    return 0


def copy_out(resp: Any, output: str | None, label: str) -> int:
    if output is None and sys.stdout.isatty():
        raise CliError("cowardly refusing to write a tar archive to a terminal; use -o or redirect", 1)
    total = resp.getheader("Content-Length")
    bar = Progress(label, int(total) if total else None)
    target = open(output, "wb") if output else os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    with target:
        while True:
            chunk = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
            if not chunk:
                break
            target.write(chunk)
            bar.add(len(chunk))
    if bar.done:
        bar.finish()
    return 0


def cmd_save(client: Client, argv: list[str]) -> int:
    p = Spec(F("-o", "--output", value=True)).parse(argv)
    if not p.positionals:
        raise UsageError('"save" requires at least 1 argument.')
    resp = client.raw("GET", "/images/get?" + "&".join(f"names={q(n)}" for n in p.positionals))
    return copy_out(resp, p["output"], "Saving")


def _chunks(stream: IO[bytes], bar: Progress) -> Iterator[bytes]:
    for chunk in read_chunks(stream, CHUNK):
        bar.add(len(chunk))
        yield chunk


def _upload_source(path: str | None) -> tuple[IO[bytes], int | None]:
    if path and path != "-":
        return open(path, "rb"), os.path.getsize(path)
    if sys.stdin.isatty():
        raise CliError("requested load from stdin, but stdin is empty; use -i or pipe an archive", 1)
    return sys.stdin.buffer, None


def cmd_load(client: Client, argv: list[str]) -> int:
    p = Spec(F("-i", "--input", value=True), F("-q", "--quiet")).parse(argv)
    source, size = _upload_source(p["input"])
    bar = Progress("Loading", size)
    with source:
        resp = client.stream_upload("/images/load" + qs({"quiet": p["quiet"] or None}), _chunks(source, bar),
                                    "application/x-tar")
    if bar.done:
        bar.finish()
    _messages(resp, sys.stdout, bool(p["quiet"]), "Loading")
    return 0


def cmd_import(client: Client, argv: list[str]) -> int:
    p = Spec(F("-c", "--change", multi=True), F("-m", "--message", value=True), F("--platform", value=True)).parse(argv)
    if not 1 <= len(p.positionals) <= 2:
        raise UsageError('"import" requires at least 1 and at most 2 arguments.')
    params: dict[str, Any] = {"fromSrc": "-", "message": p["message"]}
    if len(p.positionals) == 2:
        from dockyard.cli.commands.run import split_image

        params["repo"], params["tag"] = split_image(p.positionals[1])
    if p["change"]:
        params["changes"] = p["change"][0] if len(p["change"]) == 1 else None
    if len(p["change"]) > 1:
        raise CliError("dockyard import: more than one --change is not implemented")
    source, size = _upload_source(p.positionals[0])
    bar = Progress("Importing", size)
    with source:
        resp = client.stream_upload("/images/create" + qs(params), _chunks(source, bar), "application/x-tar")
    if bar.done:
        bar.finish()
    last: dict[str, Any] = {}
    for line in resp:
        if line.strip():
            last = json.loads(line)
            if last.get("error"):
                raise CliError(str(last["error"]), 1)
    status = str(last.get("status", ""))
    print(status.strip())
    return 0


def cmd_image_prune(client: Client, argv: list[str]) -> int:
    p = Spec(F("-a", "--all"), F("-f", "--force"), F("--filter", multi=True)).parse(argv)
    filters = list(p["filter"]) + (["dangling=false"] if p["all"] else [])
    result = client.post("/images/prune" + qs({"filters": filters_json(filters)}))
    for item in result.get("ImagesDeleted") or []:
        for key, value in item.items():
            print(f"{key}: {value}")
    print(f"Total reclaimed space: {human_size(float(result.get('SpaceReclaimed', 0)))}")
    return 0


def cmd_inspect_image(client: Client, argv: list[str]) -> int:
    from dockyard.cli.commands.system import inspect_objects

    return inspect_objects(client, argv, kind="image")
