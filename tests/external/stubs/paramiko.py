"""A stand-in for paramiko, which docker-py's tests/helpers.py imports but the selected tests
never use (it only matters for ssh:// hosts). Put on PYTHONPATH by dockerpy_suite.py only."""


class Channel:  # helpers.assert_cat_socket_detached_with_keys checks isinstance(sock, Channel)
    pass
