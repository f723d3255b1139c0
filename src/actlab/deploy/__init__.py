"""Deployment: a policy served over openpi's websocket protocol (`actlab-serve`), a client for it, and a
fixed-rate control loop (`actlab-deploy`, `python -m actlab.deploy`) that drives a robot adapter with an
in-process or a served policy.

    protocol   msgpack-numpy frames, observation checks, the metadata frame
    server     PolicyServer (websockets, asyncio), the actlab-serve entry point
    inference  the threads inference and the loop's chunk requests run on
    client     PolicyClient (a Python client of the same protocol)
    policies   what the loop asks for chunks: LocalPolicy, RemotePolicy (deadlines, reconnection)
    robots     the robot adapter interface and the simulator adapter
    safety     the clipping range and the last check of every action before the robot
    loop       the fixed-rate control loop and its watchdog
    stats      what the loop measures (deploy/stats.json)
    cli        the actlab-deploy entry point
"""
