"""Evaluate a trained policy: `python eval.py checkpoint=outputs/.../checkpoints/best [overrides]`.

Same as the `actlab-eval` console script; `python eval.py --help` lists the config groups.
"""

from actlab.eval.main import main

if __name__ == "__main__":
    main()
