"""tests/external holds external test suites run by their own runners (see README.md).

The main pytest run (testpaths = ["tests"]) must not collect anything here: the vendored
docker-py tests need a running engine and are driven by dockerpy_suite.py.
"""

collect_ignore_glob = ["*"]
