"""`python -m actlab.deploy checkpoint=... robot=sim control.frequency=10`: the control loop (actlab-deploy)."""

from actlab.deploy.main import deploy_main as main

main()
