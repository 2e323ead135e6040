"""python train.py --help: the one-liner from the command line (installed as `ppo-train`).
The code is AsyncTools/train_cli.py."""

import sys

from AsyncTools.train_cli import main

if __name__ == "__main__":
    sys.exit(main())
