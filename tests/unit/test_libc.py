import errno
import os

import pytest

from dockyard.errors import SystemFailure
from dockyard.linux import libc


def test_failed_syscall_raises_with_errno_and_context(tmp_path):
    missing = str(tmp_path / "does-not-exist")
    with pytest.raises(SystemFailure) as info:
        libc.umount(missing)
    assert info.value.errno in (errno.ENOENT, errno.EPERM, errno.EINVAL)
    assert missing in str(info.value)


def test_close_range_cloexec_marks_descriptors(tmp_path):
    r, w = os.pipe()
    try:
        os.set_inheritable(w, True)
        libc.close_range_cloexec(w)
        assert not os.get_inheritable(w)
    finally:
        os.close(r)
        os.close(w)
