"""The supervisor ("shim"): one asyncio process per daemon exec-root that owns every container's
stdio, json-file log and exit status, so that containers outlive the daemon.

`python -m dockyard.shim --root DIR` runs it; `dockyard.shim.client.ShimClient` talks to it.
The wire protocol and on-disk layout are described in `dockyard.shim.protocol`.
"""
