"""The builder: a Dockerfile and a context in, an image out, step by step, with a cache.

Each instruction makes an image (untagged, its parent the previous step's, as Docker's builder
does, so `docker history` shows every step and `docker rmi` of the result takes the untagged
steps with it). RUN runs in a real container of the engine and commits its changes; COPY/ADD
write into a snapshot of the previous step and commit it; the other instructions change only
the config. Only the stages the target needs are built.

A step's result is looked up in the build cache first (see dockyard.builder.cache); a failure
leaves nothing tagged and removes what the failing step made.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard.builder import dockerfile as df
from dockyard.builder.cache import BuildCache, cache_key
from dockyard.builder.context import BuildContext
from dockyard.builder.instructions import METADATA, PREDEFINED_ARGS, StageState, command_line, resolve_workdir
from dockyard.builder.shell import Lexer
from dockyard.errors import DockyardError, InvalidArgument, NotFound, NotImplementedFeature
from dockyard.image import containers as image_containers
from dockyard.services import fscopy
from dockyard.services.buildfiles import CopyPlan, copy_into, fetch_url, owner_ids
from dockyard.services.containers import ContainerService
from dockyard.services.specgen import DEFAULT_PATH
from dockyard.services.images import ImageService

log = logging.getLogger("dockyard.build")

Emit = Callable[[dict[str, Any]], None]
BUILD_LABEL = "dockyard.build"


class BuildError(DockyardError):
    """A step failed: the message is what Docker prints (and the client shows)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    target: str = ""
    quiet: bool = False
    network_mode: str = ""
    remove: bool = True          # rm: remove a successful step's container (a failed one's always goes)
    force_remove: bool = False   # forcerm: remove them even without rm
    platform: str = ""


@dataclass
class _Step:
    stage: int
    ins: df.Instruction


class BuildService:
    def __init__(self, data_root: str, images: ImageService, containers: ContainerService) -> None:
        self.root = os.path.join(data_root, "builder")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.cache = BuildCache(os.path.join(self.root, "cache"))
        self.images = images
        self.containers = containers
        self._remove_leftover_snapshots()

    @property
    def store(self) -> Any:
        return self.images.store

    def _remove_leftover_snapshots(self) -> None:
        """Snapshots of COPY steps a crashed daemon left behind."""
        for info in self.store.snapshots.walk():
            if info.labels.get(BUILD_LABEL):
                try:
                    self.store.snapshots.remove(info.key)
                except DockyardError as e:
                    log.warning("leftover build snapshot %s: %s", info.key, e)

    async def prune(self) -> tuple[int, int]:
        """Forget every cache entry; (entries, bytes reclaimed - the images stay until pruned)."""
        removed = await asyncio.to_thread(self.cache.prune)
        return removed, 0

    async def build(self, context_tar: BinaryIO, options: BuildOptions, emit: Emit) -> str:
        """Build; returns the image ID. Progress goes to `emit` as Docker's JSON messages."""
        workdir = tempfile.mkdtemp(prefix="ctx-", dir=self.root)
        try:
            await asyncio.to_thread(_extract_context, context_tar, workdir)
            run = _Build(self, BuildContext(workdir), options, emit)
            return await run.execute()
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)


def _extract_context(source: BinaryIO, target: str) -> None:
    """The context tar into our private directory `target`.

    Only directories made here are ever used as parents, through their descriptors, so no
    entry can go through a symlink (or `..`) out of `target`; device nodes are skipped and
    owners are not kept (COPY sets them)."""
    import stat as _stat
    import tarfile

    root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    dirs: dict[str, int] = {"": root}
    times: list[tuple[int, str, int]] = []
    try:
        try:
            tar = tarfile.open(fileobj=source, mode="r|*")  # noqa: SIM115
        except tarfile.TarError as e:
            raise InvalidArgument(f"the build context is not a valid tar: {e}") from None
        with tar:
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not parts:
                    continue
                if ".." in parts:
                    raise InvalidArgument(f"the build context has an entry that climbs out: {member.name!r}")
                parent = dirs.get("/".join(parts[:-1]))
                if parent is None:
                    parent = _make_parents(dirs, parts[:-1])
                name = parts[-1]
                rel = "/".join(parts)
                if rel in dirs:
                    continue
                if member.isdir():
                    try:
                        os.mkdir(name, 0o700, dir_fd=parent)
                    except FileExistsError:
                        os.unlink(name, dir_fd=parent)
                        os.mkdir(name, 0o700, dir_fd=parent)
                    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                    dirs[rel] = fd
                    os.chmod(fd, member.mode & 0o7777)
                    times.append((parent, name, member.mtime))
                    continue
                try:
                    os.unlink(name, dir_fd=parent)
                except FileNotFoundError:
                    pass
                if member.isreg():
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 member.mode & 0o7777, dir_fd=parent)
                    with os.fdopen(fd, "wb") as out:
                        data = tar.extractfile(member)
                        if data is not None:
                            shutil.copyfileobj(data, out, 1 << 20)
                        os.fchmod(out.fileno(), member.mode & 0o7777)
                        os.utime(out.fileno(), (member.mtime, member.mtime))
                elif member.issym():
                    os.symlink(member.linkname, name, dir_fd=parent)
                elif member.islnk():
                    link_parts = [p for p in member.linkname.split("/") if p not in ("", ".")]
                    link_parent = dirs.get("/".join(link_parts[:-1]))
                    if ".." in link_parts or link_parent is None or not link_parts:
                        raise InvalidArgument(f"the build context has a bad hard link: {member.name!r}")
                    target_stat = os.stat(link_parts[-1], dir_fd=link_parent, follow_symlinks=False)
                    if not _stat.S_ISREG(target_stat.st_mode):
                        raise InvalidArgument(f"the build context has a bad hard link: {member.name!r}")
                    os.link(link_parts[-1], name, src_dir_fd=link_parent, dst_dir_fd=parent, follow_symlinks=False)
                # fifos, devices: not part of a context
        for parent, name, mtime in reversed(times):
            os.utime(name, (mtime, mtime), dir_fd=parent, follow_symlinks=False)
    except tarfile.TarError as e:
        raise InvalidArgument(f"the build context is not a valid tar: {e}") from None
    finally:
        for fd in dirs.values():
            os.close(fd)


def _make_parents(dirs: dict[str, int], parts: list[str]) -> int:
    """Directories a tar left out (it named only files under them), made 0755."""
    current = ""
    fd = dirs[""]
    for part in parts:
        rel = f"{current}/{part}" if current else part
        if rel not in dirs:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass  # a file or symlink of that name: the open below refuses it
            dirs[rel] = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        fd, current = dirs[rel], rel
    return fd


class _Build:
    def __init__(self, service: BuildService, context: BuildContext, options: BuildOptions, emit: Emit) -> None:
        self.service = service
        self.context = context
        self.options = options
        self.emit = emit
        self.stages: dict[int, StageState] = {}
        self.used_args: set[str] = set()
        self.lexer = Lexer()

    def say(self, text: str) -> None:
        if not self.options.quiet:
            self.emit({"stream": text})

    # --- the plan -----------------------------------------------------------------------

    def _read_dockerfile(self) -> df.Dockerfile:
        name = self.options.dockerfile or "Dockerfile"
        path = self.context.path(name)
        if not os.path.isfile(path):
            raise NotFound(f"Cannot locate specified Dockerfile: {name}")
        with open(path, "rb") as handle:
            data = handle.read(16 << 20)
        return df.parse(data.decode("utf-8", "replace"))

    def _meta_args(self, parsed: df.Dockerfile) -> dict[str, str]:
        values: dict[str, str] = {}
        for ins in parsed.meta_args:
            for raw_name, raw_default in ins.pairs:
                name = raw_name
                self.used_args.add(name)
                if name in self.options.build_args:
                    values[name] = self.options.build_args[name]
                elif raw_default is not None:
                    values[name] = self.lexer.process_word(raw_default, values)
        return values

    def _stage_index(self, parsed: df.Dockerfile, ref: str, before: int) -> int | None:
        """The earlier stage that `ref` (a name or an index) means, else None (an image)."""
        for stage in parsed.stages[:before]:
            if stage.name and stage.name == ref.lower():
                return stage.index
        if ref.isdigit() and int(ref) < before:
            return int(ref)
        return None

    def _needed(self, parsed: df.Dockerfile, meta: dict[str, str]) -> list[int]:
        target = len(parsed.stages) - 1
        if self.options.target:
            found = [s.index for s in parsed.stages if s.name == self.options.target.lower()]
            if not found:
                raise InvalidArgument(f"failed to reach build target {self.options.target} in Dockerfile")
            target = found[0]
        needed: set[int] = set()
        todo = [target]
        while todo:
            index = todo.pop()
            if index in needed:
                continue
            needed.add(index)
            stage = parsed.stages[index]
            base = self.lexer.process_word(stage.base, meta)
            dep = self._stage_index(parsed, base, index)
            if dep is not None:
                todo.append(dep)
            for ins in stage.instructions:
                source = ins.flag("from") if ins.keyword in ("COPY", "ADD") else None
                if source:
                    dep = self._stage_index(parsed, self.lexer.process_word(source, meta), index)
                    if dep is not None:
                        todo.append(dep)
        return sorted(needed)

    # --- running it ---------------------------------------------------------------------

    async def execute(self) -> str:
        parsed = self._read_dockerfile()
        self.parsed = parsed
        self.lexer = Lexer(parsed.escape)  # the parser guarantees at least one stage
        meta = self._meta_args(parsed)
        self.meta = meta
        needed = self._needed(parsed, meta)
        total = sum(1 + len(parsed.stages[i].instructions) for i in needed)
        if self.options.labels:
            total += 1
        number = 0
        state: StageState | None = None
        for index in needed:
            stage = parsed.stages[index]
            number += 1
            self.say(f"Step {number}/{total} : {stage.from_instruction.original}\n")
            state = await self._from(stage, meta)
            self.stages[index] = state
            self._show_id(state)
            for ins in stage.instructions:
                number += 1
                self.say(f"Step {number}/{total} : {ins.original}\n")
                await self._dispatch(state, ins)
                self._show_id(state)
        assert state is not None
        if self.options.labels:
            number += 1
            text = " ".join(f'"{k}"="{v}"' for k, v in sorted(self.options.labels.items()))
            self.say(f"Step {number}/{total} : LABEL {text}\n")
            labels = dict(state.config.get("Labels") or {})
            labels.update(self.options.labels)
            state.config["Labels"] = labels
            await self._nop(state, f"LABEL {text}")
            self._show_id(state)
        if state.image_id is None:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        unused = sorted(k for k in self.options.build_args if k not in self.used_args and k not in PREDEFINED_ARGS)
        if unused:
            self.say(f"[Warning] One or more build-args {unused} were not consumed\n")
        return state.image_id

    def _show_id(self, state: StageState) -> None:
        if state.image_id:
            self.say(f" ---> {state.image_id.split(':', 1)[1][:12]}\n")

    async def _from(self, stage: df.Stage, meta: dict[str, str]) -> StageState:
        if stage.platform:
            platform = self.lexer.process_word(stage.platform, meta)
            host = self.service.store.platform
            if platform not in (f"{host.os}/{host.architecture}", host.os):
                raise NotImplementedFeature(f"FROM --platform={platform}: only {host.os}/{host.architecture} "
                                            "images can be built here")
        base = self.lexer.process_word(stage.base, meta)
        if not base:
            raise InvalidArgument(f"Dockerfile line {stage.line}: FROM needs an image (it expanded to nothing)")
        state = StageState(stage.index, stage.name, None)
        dep = self._stage_index(self.parsed, base, stage.index)
        if dep is not None:
            parent = self.stages[dep]
            state.image_id = parent.image_id
            state.config = _copy(parent.config)
            state.author = parent.author
            return state
        if base.lower() == "scratch":
            state.config = {"Env": [f"PATH={DEFAULT_PATH}"]}
            return state
        image = await self._image(base)
        state.image_id = str(image.id)
        details = await self.service.images.details(state.image_id)
        state.config = _copy(details.container_config)
        triggers = list(state.config.get("OnBuild") or [])
        if triggers:
            state.config["OnBuild"] = None
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for text in triggers:
                ins = _parse_trigger(text)
                await self._dispatch(state, ins)
        return state

    async def _image(self, name: str) -> Any:
        images = self.service.images
        if not self.options.pull:
            try:
                return await images.resolve(name)
            except NotFound:
                pass

        def progress(message: dict[str, Any]) -> None:
            self.emit(message)

        return await images.pull(name, progress=progress)

    async def _dispatch(self, state: StageState, ins: df.Instruction) -> None:
        keyword = ins.keyword
        try:
            if keyword == "ARG":
                await self._arg(state, ins)
            elif keyword == "WORKDIR":
                comment = METADATA[keyword](state, ins, self.lexer, self.options.build_args)
                await self._workdir(state, comment)
            elif keyword in METADATA:
                comment = METADATA[keyword](state, ins, self.lexer, self.options.build_args)
                await self._nop(state, comment)
            elif keyword == "RUN":
                await self._run(state, ins)
            elif keyword in ("COPY", "ADD"):
                await self._copy(state, ins)
            else:
                raise InvalidArgument(f"unknown instruction: {keyword}")
        except (BuildError, NotImplementedFeature, df.DockerfileError):
            raise
        except DockyardError as e:
            raise BuildError(f"Dockerfile line {ins.line}: {ins.keyword}: {e}") from None

    async def _arg(self, state: StageState, ins: df.Instruction) -> None:
        parts = []
        for raw_name, raw_default in ins.pairs:
            scope = state.expansion_env(self.options.build_args)
            name = raw_name
            default = self.lexer.process_word(raw_default, scope) if raw_default is not None else None
            if default is None and name in self.meta:
                default = self.meta[name]  # ARG NAME in a stage takes the value of the ARG before FROM
            state.args[name] = default
            self.used_args.add(name)
            parts.append(name if raw_default is None else f"{name}={default}")
        await self._nop(state, "ARG " + " ".join(parts))

    # --- steps that make an image -------------------------------------------------------

    def _lookup(self, state: StageState, parts: list[Any]) -> tuple[str, str | None]:
        key = cache_key(state.image_id or "scratch", [parts, state.config, state.author])
        if self.options.no_cache:
            return key, None
        found = self.service.cache.get(key)
        if found is not None and self.service.store.lookup(found) is None:
            self.service.cache.forget(key)
            found = None
        return key, found

    def _hit(self, state: StageState, image_id: str) -> None:
        self.say(" ---> Using cache\n")
        state.image_id = image_id

    async def _nop(self, state: StageState, comment: str) -> None:
        key, hit = self._lookup(state, ["nop", comment])
        if hit:
            self._hit(state, hit)
            return
        image = await asyncio.to_thread(
            image_containers.derive_image, self.service.store, state.image_id, None,
            container_config=_copy(state.config), author=state.author, history_author=False,
            created_by=_nop_history(state, comment))
        state.image_id = str(image.id)
        self.service.cache.put(key, state.image_id)

    async def _workdir(self, state: StageState, comment: str) -> None:
        """WORKDIR: the directory is made in the image when it is missing (a layer), as Docker does."""
        key, hit = self._lookup(state, ["workdir", comment])
        if hit:
            self._hit(state, hit)
            return
        image = await asyncio.to_thread(self._workdir_commit, state, str(state.config.get("WorkingDir") or "/"),
                                        _nop_history(state, comment))
        state.image_id = str(image.id)
        self.service.cache.put(key, state.image_id)

    def _workdir_commit(self, state: StageState, path: str, created_by: str) -> Any:
        def make(root: int, mountpoint: str) -> bool:
            if fscopy.is_directory(root, path):
                return False
            fscopy.make_dirs(root, path)
            return True
        return self._in_snapshot(state, make, created_by)

    async def _run(self, state: StageState, ins: df.Instruction) -> None:
        if state.image_id is None:
            raise BuildError(f"Dockerfile line {ins.line}: RUN needs a base image with a shell "
                             "(FROM scratch has no files)")
        unsupported = [name for name, _ in ins.flags if name not in ("network",)]
        if unsupported:
            raise NotImplementedFeature(f"RUN --{unsupported[0]} is not implemented")
        argv = _heredoc_command(state, ins) if ins.heredocs else command_line(state, ins)
        args = state.arg_values(self.options.build_args)
        env_keys = set(state.env())
        visible = {k: v for k, v in args.items() if k not in env_keys}
        history_args = {k: v for k, v in visible.items() if k not in PREDEFINED_ARGS}
        created_by = " ".join(argv)
        if history_args:
            created_by = f"|{len(history_args)} " + " ".join(f"{k}={v}" for k, v in sorted(history_args.items())) \
                + " " + created_by
        key, hit = self._lookup(state, ["run", argv, sorted(visible.items()), ins.flag("network") or ""])
        if hit:
            self._hit(state, hit)
            return
        config = {
            "Image": state.image_id, "Entrypoint": [""], "Cmd": argv,
            "Env": state.env_list + [f"{k}={v}" for k, v in sorted(visible.items())],
            "User": state.config.get("User") or "", "WorkingDir": state.config.get("WorkingDir") or "",
            "AttachStdout": True, "AttachStderr": True, "Labels": {BUILD_LABEL: "1"},
        }
        network = ins.flag("network") or self.options.network_mode or "default"
        host_config = {"NetworkMode": "none" if network == "none" else network, "LogConfig": {"Type": "none"}}
        containers = self.service.containers
        c = await containers.create(None, config, host_config)
        self.say(f" ---> Running in {c.id[:12]}\n")
        ok = False
        try:
            code = await self._run_container(c.id)
            if code != 0:
                shown = " ".join(argv) if not ins.json_form else _json(argv)
                raise BuildError(f"The command '{shown}' returned a non-zero code: {code}", code)
            await containers.unmount_rootfs(c.id)  # its changes are read from the upper dir
            image = await asyncio.to_thread(self._commit_container, c.id, state, created_by)
            ok = True
        finally:
            # a failed step's container always goes (so does a successful one's, with rm or forcerm)
            if not ok or self.options.remove or self.options.force_remove:
                try:
                    await containers.remove(c.id, force=True)
                except DockyardError as e:
                    log.warning("build container %s: %s", c.id[:12], e)
                else:
                    if ok:
                        self.say(f"Removing intermediate container {c.id[:12]}\n")
        state.image_id = str(image.id)
        self.service.cache.put(key, state.image_id)

    async def _run_container(self, cid: str) -> int:
        containers = self.service.containers
        _, reader, writer = await containers.attach(cid, False, True, True)
        try:
            exited = containers.wait_future(cid, "next-exit")
            await containers.start(cid)
            decoder = _Decoder()
            try:
                while True:
                    header = await reader.readexactly(8)
                    data = await reader.readexactly(int.from_bytes(header[4:], "big"))
                    text = decoder.feed(data)
                    if text:
                        self.say(text)
            except asyncio.IncompleteReadError:
                pass
            rest = decoder.feed(b"", final=True)
            if rest:
                self.say(rest)
            return await exited
        finally:
            writer.close()

    def _commit_container(self, cid: str, state: StageState, created_by: str) -> Any:
        store = self.service.store
        upper = store.snapshots.upper_dir(cid)
        _drop_mount_points(upper, store.snapshots.lower_dirs(cid))
        return image_containers.derive_image(store, state.image_id, upper, container_config=_copy(state.config),
                                             author=state.author, history_author=False, created_by=created_by)

    async def _copy(self, state: StageState, ins: df.Instruction) -> None:
        keyword = ins.keyword
        for name, _ in ins.flags:
            if name not in ("from", "chown", "chmod", "link", "checksum"):  # the parser checked the rest
                raise NotImplementedFeature(f"{keyword} --{name} is not implemented")
        scope = state.expansion_env(self.options.build_args)
        words = [self.lexer.process_word(w, scope) for w in ins.args]
        if len(words) < 2 and not ins.heredocs:
            raise InvalidArgument(f"{keyword} requires at least two arguments, but only one was provided. "
                                  "Destination could not be determined")
        dest_word = words[-1]
        dest = dest_word if dest_word.startswith("/") else \
            resolve_workdir(state.config.get("WorkingDir") or "/", dest_word) + ("/" if dest_word.endswith("/") else "")
        chown = ins.flag("chown")
        chown = self.lexer.process_word(chown, scope) if chown else None
        chmod = ins.flag("chmod")
        mode = None
        if chmod:
            try:
                mode = int(chmod, 8)
            except ValueError:
                raise InvalidArgument(f"invalid chmod parameter: {chmod}") from None
            if mode > 0o7777:
                raise InvalidArgument(f"invalid chmod parameter: {chmod}")
        plan = CopyPlan(keyword=keyword, dest=dest, chown=chown, mode=mode)
        source_from = ins.flag("from")
        view_key: str | None = None
        try:
            if source_from:
                ref = self.lexer.process_word(source_from, self.meta | scope)
                context, source_id, view_key = await self._source_root(ref, state.index)
                plan.add_sources(context, words[:-1], keyword, hash_content=False, source_id=source_id)
            else:
                for doc in ins.heredocs:
                    plan.add_heredoc(doc.name, self._heredoc_text(doc, scope))
                names = [w for w in words[:-1] if not (w.startswith("<<") and ins.heredocs)]
                urls = [w for w in names if keyword == "ADD" and w.startswith(("http://", "https://"))]
                for url in urls:
                    path = await fetch_url(url, self.service.root, ins.flag("checksum"))
                    plan.add_url(url, path)
                plan.add_sources(self.context, [w for w in names if w not in urls], keyword, hash_content=True)
            plan.check(ins.line)
            created_by = f"{' '.join(state.shell)} #(nop) {plan.comment()}"
            key, hit = self._lookup(state, ["copy", plan.cache_parts()])
            if hit:
                self._hit(state, hit)
                return
            image = await asyncio.to_thread(self._copy_commit, state, plan, created_by)
        finally:
            if view_key is not None:
                await asyncio.to_thread(self._drop_view, view_key)
            for item in plan.items:
                if item.local:
                    os.unlink(item.local)
        state.image_id = str(image.id)
        self.service.cache.put(key, state.image_id)

    def _heredoc_text(self, doc: df.Heredoc, scope: dict[str, str]) -> str:
        return self.lexer.process_heredoc(doc.content, scope) if doc.expand else doc.content

    async def _source_root(self, ref: str, before: int) -> tuple[BuildContext, str, str]:
        """COPY --from: an earlier stage's or an image's filesystem, mounted read-only."""
        dep = self._stage_index(self.parsed, ref, before)
        if dep is not None:
            image_id = self.stages[dep].image_id
            if image_id is None:
                raise BuildError(f"COPY --from={ref}: that stage has no files (FROM scratch)")
        else:
            image_id = str((await self._image(ref)).id)
        key = f"build-view-{secrets.token_hex(8)}"
        path = await asyncio.to_thread(self._mount_view, key, image_id)
        return BuildContext(path), image_id, key

    def _mount_view(self, key: str, image_id: str) -> str:
        from dockyard.snapshot.mount import mount_all

        store = self.service.store
        mounts = store.prepare_scratch(key, image_id, labels={BUILD_LABEL: "1"})
        target = os.path.join(self.service.root, key)
        os.makedirs(target, exist_ok=True)
        try:
            mount_all(mounts, target)
        except BaseException:
            store.remove_container(key)
            raise
        return target

    def _drop_view(self, key: str) -> None:
        from dockyard.snapshot.mount import unmount

        target = os.path.join(self.service.root, key)
        if os.path.ismount(target):
            unmount(target)
        os.rmdir(target)
        self.service.store.remove_container(key)

    def _copy_commit(self, state: StageState, plan: CopyPlan, created_by: str) -> Any:
        def copy(root: int, mountpoint: str) -> bool:
            uid, gid = owner_ids(mountpoint, plan.chown) if plan.chown else (0, 0)
            copy_into(root, plan, uid, gid)
            return True
        return self._in_snapshot(state, copy, created_by)

    def _in_snapshot(self, state: StageState, change: Any, created_by: str) -> Any:
        """Run `change(root_fd, mountpoint)` in a writable snapshot of the stage's image; commit a layer when it
        says it changed something, else an empty-layer step."""
        from dockyard.snapshot.mount import mount_all, unmount

        store = self.service.store
        key = f"build-copy-{secrets.token_hex(8)}"
        mounts = store.prepare_scratch(key, state.image_id, labels={BUILD_LABEL: "1"})
        target = os.path.join(self.service.root, key)
        os.makedirs(target)
        try:
            mount_all(mounts, target)
            try:
                root = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    changed = change(root, target)
                finally:
                    os.close(root)
            finally:
                unmount(target)
            upper = store.snapshots.upper_dir(key) if changed else None
            return image_containers.derive_image(store, state.image_id, upper, container_config=_copy(state.config),
                                                 author=state.author, history_author=False, created_by=created_by)
        finally:
            os.rmdir(target)
            store.remove_container(key)


# what the runtime creates to mount on when the image lacks it; not part of a RUN's changes
_MOUNT_POINTS = ("etc/hosts", "etc/hostname", "etc/resolv.conf", "dev", "proc", "sys")


def _drop_mount_points(upper: str, lowers: list[str]) -> None:
    for rel in _MOUNT_POINTS:
        path = os.path.join(upper, rel)
        if not os.path.lexists(path) or any(os.path.lexists(os.path.join(low, rel)) for low in lowers):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.isfile(path) and os.path.getsize(path) == 0:
            os.unlink(path)


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    import json

    copied: dict[str, Any] = json.loads(json.dumps(value or {}))
    return copied


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _parse_trigger(text: str) -> df.Instruction:
    parsed = df.parse(f"FROM scratch\n{text}\n")
    return parsed.stages[0].instructions[0]


def _nop_history(state: StageState, comment: str) -> str:
    """The history line Docker's builder writes for a step that runs nothing."""
    return f"{' '.join(state.shell)} #(nop)  {comment}"


def _heredoc_command(state: StageState, ins: df.Instruction) -> list[str]:
    """RUN <<EOF ... EOF: the body becomes the script the shell runs (Docker's dockerfile 1.4 rule:
    a lone heredoc with no command runs as a shell script; `cmd <<EOF` feeds it as stdin)."""
    first = ins.args[0].strip() if ins.args else ""
    doc = ins.heredocs[0]
    body = doc.content
    if first.startswith("<<") and len(ins.heredocs) == 1:
        if body.startswith("#!"):
            interpreter = body.splitlines()[0][2:].strip().split()
            return [*interpreter, "-c", body]
        return [*state.shell, body]
    # `python3 <<EOF`: hand the whole thing to the shell, which understands heredocs itself
    script = first + "\n" + "".join(f"{d.content}{d.name}\n" for d in ins.heredocs)
    return [*state.shell, script]


class _Decoder:
    def __init__(self) -> None:
        import codecs

        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes, final: bool = False) -> str:
        text: str = self._dec.decode(data, final)
        return text
