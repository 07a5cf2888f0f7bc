"""Image references: Docker's normalisation and its error messages (distribution/reference)."""

from __future__ import annotations

import pytest

from dockyard.types.reference import InvalidReference, parse_image, parse_reference, parse_repository

D64 = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox", "busybox"),
        ("busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
        ("library/busybox", "docker.io/library/busybox", "busybox"),
        ("docker.io/busybox", "docker.io/library/busybox", "busybox"),
        ("index.docker.io/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("user/repo", "docker.io/user/repo", "user/repo"),
        ("docker.io/user/repo:tag", "docker.io/user/repo:tag", "user/repo:tag"),
        ("library/a/b", "docker.io/library/a/b", "library/a/b"),
        ("localhost/foo", "localhost/foo", "localhost/foo"),
        ("localhost:5000/foo/bar:tag", "localhost:5000/foo/bar:tag", "localhost:5000/foo/bar:tag"),
        ("example.com/foo", "example.com/foo", "example.com/foo"),
        ("Foo.com/bar", "Foo.com/bar", "Foo.com/bar"),
        ("[::1]:5000/foo", "[::1]:5000/foo", "[::1]:5000/foo"),
        ("127.0.0.1:5000/foo:v1.0", "127.0.0.1:5000/foo:v1.0", "127.0.0.1:5000/foo:v1.0"),
        ("foo_bar/baz__qux---x.y", "docker.io/foo_bar/baz__qux---x.y", "foo_bar/baz__qux---x.y"),
        # not a valid domain (underscore), so Docker keeps it all as the path, with no domain
        ("foo_bar.baz/y", "foo_bar.baz/y", "foo_bar.baz/y"),
        ("busybox@" + D64, "docker.io/library/busybox@" + D64, "busybox@" + D64),
        ("busybox:1@" + D64, "docker.io/library/busybox:1@" + D64, "busybox:1@" + D64),
        ("example.com:8080/a/b@" + D64, "example.com:8080/a/b@" + D64, "example.com:8080/a/b@" + D64),
        ("sha256:abc", "docker.io/library/sha256:abc", "sha256:abc"),
    ],
)
def test_normalised_like_docker(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


def test_default_tag_only_without_tag_or_digest() -> None:
    assert str(parse_image("busybox")) == "docker.io/library/busybox:latest"
    assert str(parse_image("busybox:1.36")) == "docker.io/library/busybox:1.36"
    assert str(parse_image("busybox@" + D64)) == "docker.io/library/busybox@" + D64
    assert parse_image("localhost:5000/x").tag == "latest"


def test_parts() -> None:
    ref = parse_reference("localhost:5000/team/app:v2")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "team/app", "v2", None)
    assert ref.name == "localhost:5000/team/app"
    assert str(ref.with_tag("v3")) == "localhost:5000/team/app:v3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must have at least one component"),
        ("Busybox", "repository name (library/Busybox) must be lowercase"),
        ("user/Repo", "must be lowercase"),
        ("busybox:", "invalid reference format"),
        ("busybox::tag", "invalid reference format"),
        ("busybox:tag:tag", "invalid reference format"),
        ("busybox@sha256:abc", "invalid reference format"),
        ("busybox@sha256:" + "a" * 63, "64 lowercase hex"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
        ("-foo", "invalid reference format"),
        ("foo-", "invalid reference format"),
        ("foo_-bar", "invalid reference format"),
        ("foo/../bar", "invalid reference format"),
        ("http://foo/bar", "invalid reference format"),
        ("foo bar", "invalid reference format"),
        ("a/" * 127 + "ab", "not be more than 255 characters"),
        ("busybox:" + "t" * 129, "invalid reference format"),
    ],
)
def test_invalid_references_say_why(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as e:
        parse_reference(text)
    assert message in str(e.value)


def test_repository_refuses_tags() -> None:
    assert str(parse_repository("busybox")) == "docker.io/library/busybox"
    with pytest.raises(InvalidReference):
        parse_repository("busybox:1")


def test_tag_validation() -> None:
    with pytest.raises(InvalidReference):
        parse_reference("busybox").with_tag("-bad")
