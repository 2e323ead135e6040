"""train.py when the weights cannot be written at the end (the disk filled during the run): one
line saying what failed and where the run folder's copy is, exit status 1, no traceback."""

from __future__ import annotations

import errno

from AsyncTools import train_cli
from PPO import PPO


def test_a_save_that_fails_at_the_end_names_the_run_folders_copy(tmp_path, monkeypatch, capsys):
    save_dir = tmp_path / "weights"
    real_save = PPO.save_weights

    def disk_full_in_save_dir(self, path):
        if str(path) == str(save_dir):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(self, path)

    monkeypatch.setattr(PPO, "save_weights", disk_full_in_save_dir)
    code = train_cli.main(
        [
            "--steps",
            "256",
            "--num-envs",
            "2",
            "--num-steps",
            "64",
            "--backend",
            "loop",
            "--quiet",
            "--eval-every",
            "0",
            "--log-dir",
            str(tmp_path / "runs"),
            "--save-dir",
            str(save_dir),
        ]
    )
    assert code == 1
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "weights" / "Policy_weights.pth").is_file()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"train.py: error: could not write the weights to {save_dir} (No space "
        f"left on device); the run folder's copy is in {run_dir / 'weights'}"
    )
