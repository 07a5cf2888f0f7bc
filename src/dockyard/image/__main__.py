"""A small command line over the image store, for manual use (the real `dockyard` CLI talks to the daemon).

    python -m dockyard.image [--root DIR] ls | inspect IMG | history IMG | tag SRC DST | rm [-f] IMG... | prune [-a]
                                          | load [-i FILE|DIR] [--repository R] | save -o OUT [--format F] IMG...
                                          | import FILE [REF] [-c CHANGE]... | busybox | gc | check
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from dockyard.errors import DockyardError
from dockyard.image import archive
from dockyard.image.embedded import ensure_embedded
from dockyard.image.importer import import_rootfs
from dockyard.image.store import DEFAULT_ROOT, ImageStore
from dockyard.types.reference import parse_reference


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dockyard.image", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=DEFAULT_ROOT)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ls")
    for name in ("inspect", "history"):
        sub.add_parser(name).add_argument("image")
    t = sub.add_parser("tag")
    t.add_argument("source")
    t.add_argument("target")
    r = sub.add_parser("rm")
    r.add_argument("-f", "--force", action="store_true")
    r.add_argument("images", nargs="+")
    sub.add_parser("prune").add_argument("-a", "--all", action="store_true")
    ld = sub.add_parser("load")
    ld.add_argument("-i", "--input", default="-")
    ld.add_argument("--repository")
    sv = sub.add_parser("save")
    sv.add_argument("-o", "--output", required=True)
    sv.add_argument("--format", default=archive.DOCKER_ARCHIVE, choices=archive.FORMATS)
    sv.add_argument("images", nargs="+")
    im = sub.add_parser("import")
    im.add_argument("file")
    im.add_argument("reference", nargs="?")
    im.add_argument("-c", "--change", action="append", default=[])
    im.add_argument("-m", "--message", default="")
    for name in ("busybox", "gc", "check"):
        sub.add_parser(name)
    args = p.parse_args(argv)
    store = ImageStore(args.root)
    try:
        if args.cmd == "ls":
            print(f"{'REPOSITORY':40} {'TAG':12} {'IMAGE ID':14} SIZE")
            for image in store.list():
                for name in image.repo_tags or ("<none>:<none>",):
                    repo, tag = (parse_reference(name).familiar_name, parse_reference(name).tag) if image.repo_tags else ("<none>", "<none>")
                    print(f"{repo:40} {tag or '':12} {image.id.short:14} {_size(image.size)}")
        elif args.cmd == "inspect":
            d = store.details(args.image)
            print(json.dumps({"Id": str(d.image.id), "RepoTags": list(d.image.repo_tags), "RepoDigests": list(d.image.repo_digests),
                              "Parent": d.image.parent or "", "Size": d.image.size, "Target": d.image.target.to_dict(),
                              "Config": d.config.raw}, indent=2))
        elif args.cmd == "history":
            for h in store.history(args.image):
                print(f"{h.id[7:19] if h.id.startswith('sha256:') else h.id:14} {h.created or '':28} {_size(h.size):>8}  {h.created_by[:60]}")
        elif args.cmd == "tag":
            store.tag(args.source, args.target)
        elif args.cmd == "rm":
            for image in args.images:
                for item in store.remove(image, force=args.force).items():
                    for k, v in item.items():
                        print(f"{k}: {v}")
        elif args.cmd == "prune":
            report = store.prune(all_images=args.all)
            for d in report.images.deleted:
                print(f"deleted: {d}")
            print(f"Total reclaimed space: {_size(report.space_reclaimed)}")
        elif args.cmd == "load":
            if os.path.isdir(args.input):
                loaded = archive.load(store, args.input, repository=args.repository)
            else:
                with (open(args.input, "rb") if args.input != "-" else sys.stdin.buffer) as fh:
                    loaded = archive.load(store, fh, repository=args.repository)
            for item in loaded:
                for name in item.names or [str(item.image.id)]:
                    print(f"Loaded image{' ID' if not item.names else ''}: {name}")
        elif args.cmd == "save":
            if args.format == archive.OCI_DIR:
                archive.save(store, args.images, args.output, args.format)
            else:
                with (open(args.output, "wb") if args.output != "-" else sys.stdout.buffer) as fh:
                    archive.save(store, args.images, fh, args.format)
        elif args.cmd == "import":
            with (open(args.file, "rb") if args.file != "-" else sys.stdin.buffer) as fh:
                image = import_rootfs(store, fh, reference=args.reference, changes=args.change, message=args.message,
                                      source_name=args.file)
            print(image.id)
        elif args.cmd == "busybox":
            print(ensure_embedded(store, "busybox").id)
        elif args.cmd == "gc":
            print(store.gc())
        elif args.cmd == "check":
            problems = store.check(verify_blobs=True)
            print("\n".join(problems) or "ok")
            return 1 if problems else 0
    except DockyardError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
