"""``tailor video``: render policies offscreen, side by side, into an ``.mp4`` or ``.gif``.

Bad input (unknown extension, missing or foreign policy file, spaces that do not match the task,
no offscreen GL) raises :class:`tailor.errors.TailorError`, which ``tailor.cli.main`` prints as
``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse

from tailor.cli import args as argtypes
from tailor.errors import TailorError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "video",
        help="render policies on a task, side by side, into an .mp4 or .gif",
        description="Render episodes of one or more policies offscreen (MuJoCo EGL or OSMesa), "
        "every policy on the same reset seeds with its mean action, side by side with its "
        "running basic and add-on return, e.g. the prior next to its customized policy: "
        "tailor video --policy priors/hopper runs/residual --task hopper-jump "
        "--out hopper-jump.mp4",
    )
    p.add_argument(
        "--policy",
        action="extend",
        nargs="+",
        required=True,
        type=argtypes.prior_path,
        metavar="P",
        help="run directories or policy.safetensors files, one panel each, left to right "
        "(give several, or repeat --policy)",
    )
    p.add_argument("--task", help="task name (default: the task the first policy was trained on)")
    p.add_argument("--out", required=True, metavar="FILE", help="the video to write: .mp4 or .gif")
    argtypes.add_overwrite(p, "the --out file")
    p.add_argument(
        "--episodes", type=argtypes.count, default=1, help="episodes in a row (default 1)"
    )
    p.add_argument(
        "--seed", type=argtypes.seed, default=0, help="reset seed of the first episode (default 0)"
    )
    p.add_argument(
        "--steps",
        type=argtypes.count,
        help="cut each episode after this many env steps (default: the env's time limit)",
    )
    p.add_argument(
        "--every",
        type=argtypes.count,
        help="render every N-th env step (default: about 30 frames per simulated second)",
    )
    p.add_argument("--fps", type=argtypes.positive, help="frames per second (default: real time)")
    p.add_argument(
        "--width", type=argtypes.count, default=320, help="panel width in pixels (default 320)"
    )
    p.add_argument(
        "--height", type=argtypes.count, default=240, help="panel height in pixels (default 240)"
    )
    p.add_argument(
        "--label",
        action="append",
        metavar="TEXT",
        help="label of a panel, once per policy in order (default: run name and method)",
    )
    p.add_argument(
        "--quality",
        choices=("fast", "full"),
        default="fast",
        help="fast (default): no shadows or reflections, much faster on software GL; full: both",
    )
    p.add_argument(
        "--camera",
        help="a MuJoCo model camera's name (default: the model's 'track' camera, which follows "
        "the robot, if it has one)",
    )
    p.add_argument(
        "--tasks-file",
        metavar="FILE.py",
        help="a Python file that registers more tasks (tailor.envs.register_task)",
    )
    p.set_defaults(func=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from tailor.experiments.video import check_preset_gl, render_video

    if args.tasks_file:
        check_preset_gl()  # before tailor.envs imports mujoco
        from tailor.envs import load_tasks_file

        load_tasks_file(args.tasks_file)
    # Before the episodes are rendered; not a policy file, nor an existing video.
    argtypes.check_output_arg(args, args.out, what="--out")
    if args.label is not None and len(args.label) != len(args.policy):
        raise TailorError(
            f"got {len(args.label)} --label for {len(args.policy)} policies; give one per policy"
        )
    result = render_video(
        args.policy,
        args.task,
        args.out,
        episodes=args.episodes,
        seed=args.seed,
        max_steps=args.steps,
        every=args.every,
        fps=args.fps,
        width=args.width,
        height=args.height,
        labels=args.label,
        quality=args.quality,
        camera=args.camera,
    )
    print(
        f"wrote {result['out']}: {result['frames']} frames of {result['width']}x"
        f"{result['height']} at {result['fps']:.4g} fps (every {result['every']} env steps), "
        f"task {result['task']}, MUJOCO_GL={result['backend']}, "
        f"{1000 * result['render_s_per_frame']:.1f} ms per panel render, "
        f"{result['wall_s']:.1f} s in all"
    )
    for row in result["policies"]:
        for k, (basic, addon, length) in enumerate(
            zip(row["basic"], row["addon"], row["length"], strict=True)
        ):
            ep = f" episode {k + 1}" if result["episodes"] > 1 else ""
            print(f"  {row['label']}{ep}: basic {basic:.1f}, add-on {addon:.1f}, {length} steps")
    return 0
