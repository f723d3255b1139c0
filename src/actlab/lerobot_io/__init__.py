"""LeRobot's on-disk formats that every layer above may use:

features   actlab PolicyFeature <-> LeRobot feature specs and policy features, the ACT fields both share
writer     writing LeRobot v3.0 datasets with LeRobot's own writer (collection, conversion, tests)

Reading LeRobot datasets is a dataset format (actlab.data.formats.lerobot); reading LeRobot ACT folders is
part of loading a policy (actlab.policy.lerobot_folder); writing them is `actlab-export` (actlab.export).
"""
