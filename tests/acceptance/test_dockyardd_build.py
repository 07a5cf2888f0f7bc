"""`docker build` (the legacy /build endpoint) against dockyardd, and the same builds in Docker.

The real docker CLI builds a multi-stage Dockerfile that uses every instruction; the result
runs with the expected entrypoint, user, workdir, env, labels and files. Rebuilds use the
cache for every step; changing one copied file rebuilds from its COPY on. Bad Dockerfiles stop
with the line and leave nothing tagged. The same Dockerfile built by the real Docker engine
gives the same config and file tree.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_dockyardd_api import daemon, docker, explain, needs_containers  # noqa: F401
from dockyardd import Dockyardd

pytestmark = [pytest.mark.root, needs_containers]

FULL = """\
# syntax=docker/dockerfile:1
# escape=\\
ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
ENV APP_HOME=/app \\
    STAGE=build
WORKDIR $APP_HOME
COPY src/ ./src/
COPY --chmod=755 run.sh /usr/local/bin/run.sh
RUN echo "$GREETING from ${STAGE}" > built.txt && cat src/a.txt >> built.txt
RUN <<EOF
echo heredoc > /app/heredoc.txt
EOF
COPY <<EOF /app/inline.txt
inline ${APP_HOME}
EOF

FROM busybox AS unused
RUN echo this stage is not needed && exit 7

FROM ${BASE}
LABEL org.example.title="demo app" version=1
MAINTAINER someone@example.com
ENV PATH=/app/bin:$PATH MODE=prod
ARG UID=1234
RUN echo "app:x:${UID}:${UID}::/home/app:/bin/sh" >> /etc/passwd && echo "app:x:${UID}:" >> /etc/group \\
    && mkdir -p /home/app
COPY --from=builder --chown=app:app /app /app
COPY --from=builder /usr/local/bin/run.sh /usr/local/bin/
ADD files.tar /opt/
ADD URL/remote.txt /opt/remote.txt
EXPOSE 8080 53/udp
VOLUME ["/data"]
USER app
WORKDIR /app
HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD test -f /app/built.txt
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-c"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/usr/local/bin/run.sh"]
CMD ["default"]
"""

RUN_SH = """#!/bin/sh
echo "args=$* user=$(id -un) pwd=$(pwd) mode=$MODE"
cat /app/built.txt /app/heredoc.txt /app/inline.txt
"""


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """A file server on loopback for ADD <url>."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/remote.txt":
                self.send_error(404)
                return
            body = b"remote content\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def make_context(root: Path, url: str) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("source a\n")
    (root / "src" / "b.txt").write_text("source b\n")
    (root / "run.sh").write_text(RUN_SH)
    (root / "ignored.log").write_text("must not be sent\n")
    (root / ".dockerignore").write_text("*.log\n")
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        data = b"packed content\n"
        info = tarfile.TarInfo("files/packed.txt")
        info.size, info.mode = len(data), 0o640
        tar.addfile(info, io.BytesIO(data))
    (root / "files.tar").write_bytes(packed.getvalue())
    (root / "Dockerfile").write_text(FULL.replace("URL", url))
    return root


def build(daemon: Dockyardd, context: Path, *args: str):  # type: ignore[no-untyped-def]
    return docker(daemon, "build", *args, str(context), timeout=180)


def steps_using_cache(output: str) -> int:
    return output.count("---> Using cache")


def test_build_every_instruction(daemon: Dockyardd, tmp_path: Path, http_server: str) -> None:
    context = make_context(tmp_path / "ctx", http_server)
    tag = f"dy-build-{os.getpid()}:full"
    r = build(daemon, context, "-t", tag, "--build-arg", "GREETING=hi")
    try:
        assert r.ok, explain(daemon, r)
        assert "this stage is not needed" not in r.stdout  # the unused stage was skipped
        assert re.search(r"Successfully built [0-9a-f]{12}", r.stdout) and f"Successfully tagged {tag}" in r.stdout
        info = daemon.inspect(tag)
        cfg = info["Config"]
        assert cfg["Entrypoint"] == ["/usr/local/bin/run.sh"] and cfg["Cmd"] == ["default"]
        assert cfg["User"] == "app" and cfg["WorkingDir"] == "/app"
        assert "MODE=prod" in cfg["Env"] and any(e.startswith("PATH=/app/bin:") for e in cfg["Env"])
        assert not any(e.startswith("UID=") for e in cfg["Env"])  # build args are not kept
        assert cfg["Labels"] == {"org.example.title": "demo app", "version": "1"}
        assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
        assert cfg["Volumes"] == {"/data": {}}
        assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /app/built.txt"], "Interval": 5_000_000_000,
                                      "Timeout": 2_000_000_000, "Retries": 3}
        assert cfg["StopSignal"] == "SIGINT" and cfg["Shell"] == ["/bin/sh", "-c"]
        assert cfg["OnBuild"] == ["RUN echo triggered"]
        assert info["Author"] == "someone@example.com"
        r = docker(daemon, "run", "--rm", tag, "one", "two")
        assert r.ok, explain(daemon, r)
        assert r.stdout.splitlines() == [
            "args=one two user=app pwd=/app mode=prod", "hi from build", "source a", "heredoc", "inline /app"]
        r = docker(daemon, "run", "--rm", "-u", "root", "--entrypoint", "sh", tag, "-c",
                   "cat /opt/files/packed.txt /opt/remote.txt; stat -c '%U %a' /app/built.txt /usr/local/bin/run.sh; "
                   "ls /app; ls /; stat -c %a /opt/files/packed.txt /opt/remote.txt")
        assert r.ok, explain(daemon, r)
        lines = r.stdout.splitlines()
        assert lines[:4] == ["packed content", "remote content", "app 644", "root 755"], r.stdout
        assert "ignored.log" not in r.stdout and lines[-2:] == ["640", "600"]
        history = docker(daemon, "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)
        assert history.ok and "|1 UID=1234 /bin/sh -c echo \"app:x:${UID}" in history.stdout, history.stdout
        assert "ENTRYPOINT" in history.stdout
    finally:
        docker(daemon, "rmi", "-f", tag)


def test_cache_reuse_and_invalidation(daemon: Dockyardd, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "a.txt").write_text("one\n")
    (context / "b.txt").write_text("bee\n")
    (context / "Dockerfile").write_text(
        "FROM busybox\nENV A=1\nRUN echo first > /first\nCOPY b.txt /b.txt\nRUN echo second > /second\n"
        "COPY a.txt /a.txt\nRUN cat /a.txt > /copy\nCMD [\"cat\", \"/copy\"]\n")
    tag = f"dy-cache-{os.getpid()}"
    try:
        first = build(daemon, context, "-t", tag)
        assert first.ok, explain(daemon, first)
        image = daemon.inspect(tag)["Id"]
        again = build(daemon, context, "-t", tag)
        assert again.ok and steps_using_cache(again.stdout) == 7, again.stdout
        assert daemon.inspect(tag)["Id"] == image
        os.utime(context / "a.txt", (1, 1))  # a new mtime, the same content: still cached
        touched = build(daemon, context, "-t", tag)
        assert touched.ok and steps_using_cache(touched.stdout) == 7, touched.stdout
        (context / "a.txt").write_text("two\n")
        changed = build(daemon, context, "-t", tag)
        assert changed.ok, explain(daemon, changed)
        assert steps_using_cache(changed.stdout) == 4, changed.stdout  # ENV, RUN, COPY b, RUN; then COPY a on
        r = docker(daemon, "run", "--rm", tag)
        assert r.ok and r.stdout == "two\n", explain(daemon, r)
        no_cache = build(daemon, context, "--no-cache", "-t", tag)
        assert no_cache.ok and steps_using_cache(no_cache.stdout) == 0, no_cache.stdout
    finally:
        docker(daemon, "rmi", "-f", tag)


@pytest.mark.parametrize("dockerfile,expected", [
    ("FROM busybox\nRUN true\nFROOM x\n", "line 3"),
    ("FROM busybox\nRUN exit 3\n", "returned a non-zero code: 3"),
    ("FROM busybox\nCOPY missing.txt /x\n", "missing.txt"),
    ("FROM busybox\nCOPY --nope=1 a /b\n", "--nope"),
    ("RUN true\n", "FROM"),
])
def test_bad_input_leaves_nothing_tagged(daemon: Dockyardd, tmp_path: Path, dockerfile: str, expected: str) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    tag = f"dy-bad-{os.getpid()}"
    r = build(daemon, tmp_path, "-t", tag)
    assert not r.ok and expected in (r.stdout + r.stderr), r
    assert not docker(daemon, "image", "inspect", tag).ok


def test_target_and_iidfile(daemon: Dockyardd, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS one\nRUN echo one > /one\n"
        "FROM one AS two\nRUN echo two > /two\n"
        "FROM busybox\nRUN exit 9\n")
    iid = tmp_path / "iid"
    r = build(daemon, tmp_path, "--target", "two", "--iidfile", str(iid))
    assert r.ok, explain(daemon, r)
    image = iid.read_text().strip()
    try:
        out = docker(daemon, "run", "--rm", image, "cat", "/one", "/two")
        assert out.ok and out.stdout == "one\ntwo\n", explain(daemon, out)
        r = build(daemon, tmp_path, "--target", "nosuch")
        assert not r.ok and "nosuch" in r.stderr
    finally:
        docker(daemon, "rmi", "-f", image)


def _tree(data: bytes) -> dict[str, tuple[object, ...]]:
    """A container export's entries without times (and without the runtime's mount points)."""
    # Docker's init layer, and the VOLUME's mount point Docker makes in the container at create
    skip = ("etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv", "etc/mtab", "data")
    out: dict[str, tuple[object, ...]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            name = m.name.removeprefix("./").lstrip("/").rstrip("/")
            if not name or name in skip or name.split("/")[0] in ("dev", "proc", "sys"):
                continue
            digest = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isreg() else ""  # type: ignore[union-attr]
            out[name] = (m.type, m.mode & 0o7777, m.uid, m.gid, m.linkname, digest)  # Go adds type bits
    return out


CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "Healthcheck",
               "StopSignal", "OnBuild", "Shell")


@pytest.mark.docker
@pytest.mark.slow
def test_same_image_as_docker(daemon: Dockyardd, tmp_path: Path, http_server: str) -> None:
    from docker_engine import EngineError, start_engine, stop_engine

    context = make_context(tmp_path / "ctx", http_server)
    # Docker's legacy builder (dockerd 20.10 here) predates heredocs: the same file without them
    text = (context / "Dockerfile").read_text()
    text = text.replace("RUN <<EOF\necho heredoc > /app/heredoc.txt\nEOF\n", "")
    text = text.replace("COPY <<EOF /app/inline.txt\ninline ${APP_HOME}\nEOF\n", "")
    text = text.replace("COPY --chmod=755 run.sh", "COPY run.sh")  # --chmod needs BuildKit there too
    text = text.replace("&& exit 7", "")  # and it builds every stage, needed or not
    (context / "run.sh").chmod(0o755)
    assert "<<" not in text and "--chmod" not in text
    (context / "Dockerfile").write_text(text)
    saved = tmp_path / "busybox.tar"
    assert docker(daemon, "save", "-o", str(saved), "busybox").ok
    try:
        engine = start_engine(tmp_path / "engine")
    except EngineError as e:
        pytest.skip(f"the real Docker engine does not start here: {e}")
    tag = f"dy-same-{os.getpid()}"
    try:
        engine.docker("load", "-i", str(saved)).check()
        theirs = engine.docker("build", "--network", "none", "-t", tag, str(context), timeout=300)
        assert theirs.ok, f"{theirs}\n{engine.log_tail()}"
        ours = build(daemon, context, "--network", "none", "-t", tag)
        assert ours.ok, explain(daemon, ours)
        their_cfg = json.loads(engine.docker("image", "inspect", tag).check().stdout)[0]["Config"]
        our_cfg = daemon.inspect(tag)["Config"]
        for key in CONFIG_KEYS:
            assert (our_cfg.get(key) or None) == (their_cfg.get(key) or None), key
        trees = []
        for d in (engine, daemon):
            cid = d.docker("create", tag).check().stdout.strip()
            try:
                exported = d.docker_bytes("export", cid) if hasattr(d, "docker_bytes") else None
                if exported is None:
                    out = tmp_path / f"export-{len(trees)}.tar"
                    d.docker("export", "-o", str(out), cid).check()
                    exported = out.read_bytes()
                trees.append(_tree(exported))
            finally:
                d.docker("rm", "-f", cid)
        theirs_tree, ours_tree = trees
        assert sorted(set(theirs_tree) ^ set(ours_tree)) == []
        different = {k: (theirs_tree[k], ours_tree[k]) for k in theirs_tree if theirs_tree[k] != ours_tree[k]}
        assert different == {}
    finally:
        docker(daemon, "rmi", "-f", tag)
        problems = stop_engine(engine)
        assert not problems, problems


def test_workdir_is_created_in_the_image(daemon: Dockyardd, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text('FROM busybox\nWORKDIR /made/by/workdir\nCMD ["pwd"]\n')
    tag = f"dy-workdir-{os.getpid()}"
    r = build(daemon, tmp_path, "-t", tag)
    try:
        assert r.ok, explain(daemon, r)
        out = docker(daemon, "run", "--rm", tag)
        assert out.ok and out.stdout == "/made/by/workdir\n", explain(daemon, out)
        diff = docker(daemon, "run", "--rm", "-w", "/", tag, "ls", "-d", "/made/by/workdir")
        assert diff.ok, explain(daemon, diff)
    finally:
        docker(daemon, "rmi", "-f", tag)
