"""Dockyard: a container engine written in Python."""

__version__ = "0.1.0"
OCI_VERSION = "1.1.0"
