"""Helpers shared by the integration tests, the acceptance tests and the benchmarks.

They build their fixtures with the machine's own tools (the static busybox, tar) and never
import `dockyard`, so that they can check Dockyard against the reference tools without taking
anything on trust from the code under test.
"""
