"""Deployment: a policy served over openpi's websocket protocol (`actlab-serve`), a client for it, and a
fixed-rate control loop (`actlab-deploy`, `python -m actlab.deploy`) that drives a robot adapter with an
in-process or a served policy.

    protocol   msgpack-numpy frames, observation checks, the metadata frame
    server     PolicyServer (websockets, asyncio), the actlab-serve entry point
    client     PolicyClient (a Python client of the same protocol)
    robots     the robot adapter interface and the simulator adapter
    chunks     chunk execution that hides inference latency
    loop       the fixed-rate control loop, its statistics, the actlab-deploy entry point
"""
