"""python tune.py --help: tune PPO's settings for an env with Optuna (installed as `ppo-tune`).
The code is AsyncTools/tune_cli.py."""

import sys

from AsyncTools.tune_cli import main

if __name__ == "__main__":
    sys.exit(main())
