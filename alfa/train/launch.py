"""How `alfa train` launches a recipe: accelerate's launcher around `alfa train` itself.

In a recipe, `launch.num_processes` is the number of processes (GPUs) on *each* machine, as trainers count
them; accelerate's `--num_processes` is the total over all machines. With several machines every node runs
the same command with its own `--machine_rank`, and all of them reach machine 0 at `main_process_ip`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def launcher(recipe, machine_rank: int = 0) -> list[str]:
    """`accelerate launch` with the recipe's processes, machines, precision and DeepSpeed config; the
    program to launch goes after it."""
    launch = recipe.launch
    # The accelerate installed beside this Python (the venv's), also when the venv is not activated.
    beside = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(beside) if beside.exists() else "accelerate",
        "launch",
        "--num_processes",
        str(launch.num_processes * launch.num_machines),
        "--num_machines",
        str(launch.num_machines),
        "--mixed_precision",
        launch.mixed_precision,
    ]
    if launch.num_machines > 1:
        if not launch.main_process_ip:
            raise ValueError(
                f"launch.num_machines is {launch.num_machines}: set launch.main_process_ip to the "
                "address of machine 0 (every node must reach it on launch.main_process_port)"
            )
        cmd += [
            "--machine_rank",
            str(machine_rank),
            "--main_process_ip",
            launch.main_process_ip,
            "--main_process_port",
            str(launch.main_process_port),
        ]
    if launch.deepspeed:
        cmd += ["--use_deepspeed", "--deepspeed_config_file", launch.deepspeed]
    elif launch.num_processes * launch.num_machines > 1:
        # Without it accelerate starts several processes only when it sees several GPUs on this machine: on
        # one GPU per node, or on CPUs (gloo), it would silently run one process.
        cmd += ["--multi_gpu"]
    return cmd


def launch_command(recipe_path: Path, recipe, machine_rank: int = 0, overrides: list[str] | tuple = ()) -> list[str]:
    """The exact command `alfa train` runs (on machine `machine_rank`), with the same --set overrides."""
    cmd = launcher(recipe, machine_rank) + ["-m", "alfa.cli", "train", str(recipe_path)]
    cmd += [arg for o in overrides for arg in ("--set", o)]
    return cmd + (["--machine-rank", str(machine_rank)] if recipe.launch.num_machines > 1 else [])


def launch_lines(recipe_path: Path, recipe, overrides: list[str] | tuple = ()) -> list[str]:
    """What `--dry-run` prints: the one command, or one per node."""
    if recipe.launch.num_machines == 1:
        return ["launch: " + shlex.join(launch_command(recipe_path, recipe, 0, overrides))]
    return [
        f"launch on machine {rank} of {recipe.launch.num_machines}: "
        + shlex.join(launch_command(recipe_path, recipe, rank, overrides))
        for rank in range(recipe.launch.num_machines)
    ]
