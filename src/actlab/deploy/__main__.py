"""`python -m actlab.deploy checkpoint=... robot=sim control.frequency=10`: the control loop (actlab-deploy)."""

from actlab.deploy.cli import main

main()
