"""python compare.py --help: compare run folders across seeds, with bootstrap confidence
intervals (installed as `ppo-compare`). The code is AsyncTools/compare_cli.py."""

import sys

from AsyncTools.compare_cli import main

if __name__ == "__main__":
    sys.exit(main())
