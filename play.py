"""python play.py --help: play, evaluate or record saved weights (installed as `ppo-play`).
The code is AsyncTools/play_cli.py."""

import sys

from AsyncTools.play_cli import main

if __name__ == "__main__":
    sys.exit(main())
