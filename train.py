"""Train an ACT policy: `python train.py model=large dataset=g1 dataset.root=/path/to/g1`.

Same as the `actlab-train` console script; `python train.py --help` lists the config groups.
"""

from actlab.cli import main

if __name__ == "__main__":
    main()
