"""Networking: bridges and veths, embedded DNS, published-port proxies."""
