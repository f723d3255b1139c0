"""Everything that reads or writes LeRobot's formats, in one place:

features   actlab PolicyFeature <-> LeRobot feature specs and policy features
dataset    reading LeRobot datasets (codebase v2.0, v2.1, v3.0) into an EpisodeStore
writer     writing LeRobot v3.0 datasets with LeRobot's own writer (collection, conversion, tests)
export     an actlab policy -> a LeRobot ACT pretrained folder (LeRobot's classes), `actlab-export`
imports    a LeRobot ACT pretrained folder (0.4 layout with processors, or the older one) -> actlab
"""
