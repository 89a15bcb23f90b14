"""The `picat` command: the entry points the workflow's rules call, and user utilities.

The commands that take `--settings` JSON (pretrain, features, svm, fewshot, finetune, partseg,
semseg, standins, seg-standins) also take `--config FILE [--set KEY.SUB=VALUE ...]` in its place:
the settings, suite, precision and dataset come from the file's suite block as the workflow
would pass them, after the overrides, and the effective config is validated first.

Errors a user can act on print one line naming the file or key; set PICAT_DEBUG=1 for the
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from picat.config import SUITES, command_settings, load_config
from picat.convert.cli import add_command as add_convert
from picat.fetch.cli import add_command as add_fetch_data

# picat.accelerator.AMP_MODES, spelled out here so that `picat --help` does not import torch
# (tests/test_precision_loops.py checks that the two agree).
AMP_CHOICES = ("fp32", "bf16", "auto")

# Errors a user can act on: printed as one line, without a traceback. picat's own (ConfigError,
# CorpusError, DatasetError, MeshError, ShardError) are ValueErrors; naming them here would import
# h5py, trimesh and pandas, which `picat --help` and a lean install (no [workflow] extra) do without.
USER_ERRORS = (FileNotFoundError, RuntimeError, ValueError)


class _Default(str):
    """A default argparse fills in, told apart from the same value given on the command line (so
    that ``--config`` may supply it)."""


AMP_DEFAULT = _Default("fp32")
UP_AXIS_DEFAULT = _Default("y")


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _given(value: object) -> bool:
    """Whether an option was given on the command line (not left to its default)."""
    return value is not None and not isinstance(value, _Default)


def _resolve_settings(args: argparse.Namespace) -> None:
    """Fill ``args`` from ``--config FILE [--set K=V ...]``, or check that ``--settings`` and ``--suite`` were given.

    With a config, the command's settings come from the selected suite's block (``--suite``, else
    the config's ``suite`` key) as the workflow's rule passes them; the precision (``amp``), the
    dataset spec of ``--benchmark`` and, for pretrain, the up axis and the 2D backbone come from the
    suite too, unless given on the command line.
    """
    if args.config_file is None:
        if args.overrides:
            raise ValueError("--set needs --config FILE (the config it overrides)")
        if args.settings is None:
            raise ValueError("give --settings JSON, or --config FILE to take the settings from a config")
        if args.suite is None:
            raise ValueError("give --suite (or --config FILE, whose 'suite' key then picks it)")
        return
    if args.settings is not None:
        raise ValueError("give --settings or --config, not both")
    config = load_config(args.config_file, args.overrides)
    args.suite = args.suite or config["suite"]
    args.settings = command_settings(config, args.command, args.suite)
    block = config[args.suite]
    if hasattr(args, "amp") and not _given(args.amp):
        args.amp = block["amp"]
    if getattr(args, "logging", "absent") is None:
        args.logging = block.get("logging")
    if args.command == "pretrain":
        if not _given(args.up_axis):
            args.up_axis = block["corpus"]["up_axis"]
        if args.image_backbone is None and not args.features:
            args.image_backbone = dict(block["image_backbone"])
    if getattr(args, "dataset", "absent") is None and getattr(args, "features", None) is None:
        benchmark = "shapenetpart" if args.command == "partseg" else args.benchmark
        datasets = block["downstream"]["datasets"]
        if benchmark not in datasets:
            raise ValueError(f"config key '{args.suite}.downstream.datasets' has no {benchmark!r} entry; "
                             f"pass --dataset JSON or add one")
        args.dataset = dict(datasets[benchmark])


def _cmd_render_env(args: argparse.Namespace) -> None:
    from picat.stages.render_env import build

    build(Path(args.env_dir))


def _cmd_corpus(args: argparse.Namespace) -> None:
    from picat.stages.corpus import build_corpus

    build_corpus(args.settings, args.objects_per_shard, Path(args.out), heldout=args.heldout)


def _cmd_render(args: argparse.Namespace) -> None:
    from picat.stages.render import render_shard

    render_shard(Path(args.manifest), Path(args.out), Path(args.env), args.settings, args.up_axis)


def _cmd_pack(args: argparse.Namespace) -> None:
    from picat.stages.pack import pack_shard

    pack_shard(Path(args.manifest), Path(args.renders), Path(args.out), args.n_points, args.seed, args.suite)


def _cmd_validate(args: argparse.Namespace) -> None:
    from picat.shards import validate_shard

    for path in args.shards:
        summary = validate_shard(Path(path), check_projection=args.check_projection)
        if args.json:
            print(json.dumps(summary, indent=2))
            continue
        print(f"{summary['path']}: OK (schema v{summary['schema_version']}, {summary['file_mb']} MB, "
              f"suite {summary['suite']!r})")
        print(f"  objects: {summary['objects']} x {summary['points_per_object']} points, "
              f"{summary['views']} views of {summary['image_size'][0]}x{summary['image_size'][1]}")
        print("  categories: " + ", ".join(f"{c} {n}" for c, n in summary["categories"].items()))
        print(f"  skipped: {len(summary['skipped'])}")
        for skipped in summary["skipped"]:
            print(f"    {skipped['object_id']} ({skipped['path']}): {skipped['reason']}")
        if "min_fraction_on_mask" in summary:
            worst = min(summary["min_fraction_on_mask"].values())
            print(f"  projection check: worst view of {len(summary['min_fraction_on_mask'])} objects has "
                  f"{100 * worst:.1f}% of points on the object's mask")


def _cmd_index(args: argparse.Namespace) -> None:
    from picat.stages.shard_index import index_shards

    index_shards([Path(path) for path in args.shards], Path(args.out))


def _cmd_encode(args: argparse.Namespace) -> None:
    import torch

    from picat.devices import pick_device
    from picat.models.image import ImageBackboneSpec, build_image_backbone
    from picat.stages.encode import encode_shard

    torch.set_num_threads(args.threads)
    encoder = build_image_backbone(ImageBackboneSpec(**args.image_backbone))
    encode_shard(Path(args.shard), Path(args.out), encoder, args.batch_size, args.dtype, pick_device(args.device),
                 amp=args.amp)


def _pretrain_argv(args: argparse.Namespace) -> list[str]:
    """``picat pretrain`` arguments that reproduce ``args`` in each torchrun process (without --nproc)."""
    argv = ["pretrain", "--shards", *args.shards]
    if args.features:
        argv += ["--features", *args.features]
    argv += ["--out", args.out, "--backbone", args.backbone, "--variant", args.variant, "--seed", str(args.seed),
             "--settings", json.dumps(args.settings), "--up-axis", args.up_axis, "--suite", args.suite,
             "--device", args.device, "--threads", str(args.threads), "--amp", args.amp]
    if args.image_backbone is not None:
        argv += ["--image-backbone", json.dumps(args.image_backbone)]
    if args.stop_after_epochs is not None:
        argv += ["--stop-after-epochs", str(args.stop_after_epochs)]
    if args.logging is not None:
        argv += ["--logging", json.dumps(args.logging)]
    return argv


def _cmd_pretrain(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    import torch

    from picat.pretrain.distributed import ENV_WORLD_SIZE, init_distributed, launcher_command, shutdown_distributed
    from picat.stages.pretrain import run_pretraining

    if args.nproc < 0:
        raise ValueError(f"--nproc must be 0 or more, got {args.nproc}")
    if args.nproc > 1 and ENV_WORLD_SIZE not in os.environ:
        # Become torchrun (exec, not a child: a scheduler's signals reach torchrun, which
        # forwards them to the ranks); each rank re-enters here with WORLD_SIZE set.
        command = launcher_command(_pretrain_argv(args), args.nproc)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)
    ranks, device = init_distributed(args.device)
    # The job's --threads are shared by its processes.
    torch.set_num_threads(max(1, args.threads // ranks.world_size))
    features = [Path(path) for path in args.features] if args.features else None
    try:
        run_pretraining([Path(path) for path in args.shards], features, Path(args.out), args.backbone, args.variant,
                        args.seed, args.settings, args.up_axis, args.suite, args.image_backbone, device,
                        args.stop_after_epochs, ranks=ranks, amp=args.amp, logging_settings=args.logging)
    finally:
        shutdown_distributed()


def _backbone_source(args: argparse.Namespace) -> dict:
    if (args.checkpoint is None) == (args.random is None):
        raise ValueError("give exactly one of --checkpoint and --random")
    return {"checkpoint": Path(args.checkpoint) if args.checkpoint else None, "random_spec": args.random}


def _frozen_source(args: argparse.Namespace) -> dict:
    """A frozen-feature protocol's input: a features file, or --dataset with a backbone source."""
    if args.features is not None:
        if args.checkpoint is not None or args.random is not None or args.dataset is not None:
            raise ValueError("--features already names the dataset and backbone: leave out --dataset, --checkpoint "
                             "and --random")
        return {"features": Path(args.features)}
    if args.dataset is None:
        raise ValueError("give --dataset with --checkpoint or --random, or a --features file")
    return _backbone_source(args)


def _cmd_standins(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    from picat.stages.standins import build_standins

    build_standins(args.settings, Path(args.out))


def _cmd_svm(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    import torch

    from picat.stages.svm import run_svm

    torch.set_num_threads(args.threads)
    run_svm(args.benchmark, args.dataset, args.settings, Path(args.out), args.suite, args.seed,
            device=args.device, amp=args.amp, n_jobs=args.threads, **_frozen_source(args))


def _cmd_fewshot(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    import torch

    from picat.stages.fewshot import run_fewshot

    torch.set_num_threads(args.threads)
    run_fewshot(args.benchmark, args.dataset, args.settings, Path(args.out), args.suite, args.seed,
                device=args.device, amp=args.amp, n_jobs=args.threads, **_frozen_source(args))


def _cmd_features(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    import torch

    from picat.stages.features import run_features

    torch.set_num_threads(args.threads)
    run_features(args.benchmark, args.dataset, args.settings, Path(args.out), args.suite, args.seed,
                 device=args.device, amp=args.amp, imported=args.imported, **_backbone_source(args))


def _cmd_finetune(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    import torch

    from picat.stages.finetune import run_finetune

    torch.set_num_threads(args.threads)
    run_finetune(args.benchmark, args.dataset, args.settings, Path(args.out), args.suite, args.seed,
                 device=args.device, amp=args.amp, stop_after_epochs=args.stop_after_epochs,
                 logging_settings=args.logging, **_backbone_source(args))


def _cmd_seg_standins(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    from picat.stages.seg_standins import build_seg_standins

    build_seg_standins(Path(args.out), args.settings)


def _cmd_s3dis_convert(args: argparse.Namespace) -> None:
    from picat.stages.s3dis_convert import convert_s3dis

    convert_s3dis(Path(args.raw), Path(args.out))


def _cmd_partseg(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    import torch

    from picat.stages.partseg import run_partseg

    torch.set_num_threads(args.threads)
    run_partseg(args.dataset, args.settings, Path(args.out), args.suite, args.seed, device=args.device,
                amp=args.amp, stop_after_epochs=args.stop_after_epochs, logging_settings=args.logging,
                **_backbone_source(args))


def _cmd_semseg(args: argparse.Namespace) -> None:
    _resolve_settings(args)
    import torch

    from picat.stages.semseg import run_semseg

    torch.set_num_threads(args.threads)
    run_semseg(Path(args.rooms), args.settings, Path(args.out), args.suite, args.seed, device=args.device,
               amp=args.amp, stop_after_epochs=args.stop_after_epochs, logging_settings=args.logging,
               **_backbone_source(args))


def _cmd_figure4(args: argparse.Namespace) -> None:
    from picat.stages.figure4 import make_figure4

    make_figure4(Path(args.checkpoint), [Path(path) for path in args.shards],
                 [Path(path) for path in args.features] if args.features else None, Path(args.out),
                 Path(args.summary) if args.summary else None, n_objects=args.n_objects, seed=args.seed,
                 device=args.device, correspondence=Path(args.correspondence) if args.correspondence else None)


def _cmd_correspondence(args: argparse.Namespace) -> None:
    import torch

    from picat.stages.correspondence import run_correspondence

    torch.set_num_threads(args.threads)
    run_correspondence(Path(args.checkpoint), [Path(path) for path in args.shards],
                       [Path(path) for path in args.features], Path(args.out), args.batch_size, seed=args.seed,
                       device=args.device)


def _cmd_tables(args: argparse.Namespace) -> None:
    from picat.stages.tables import collate

    collate([Path(path) for path in args.results], Path(args.out), Path(args.tables_dir), Path(args.figure2),
            args.paper_suite, figure4_summaries=[Path(path) for path in args.figure4],
            correspondence_results=[Path(path) for path in args.correspondence])


def _cmd_check_config(args: argparse.Namespace) -> None:
    config = load_config(args.config, args.overrides)
    print(f"{args.config}{' with ' + ' '.join(args.overrides) if args.overrides else ''}: valid")
    if args.print:
        print(yaml.safe_dump(config, sort_keys=False), end="")


def _add_config_arguments(command: argparse.ArgumentParser, name: str) -> None:
    """``--config FILE`` and ``--set KEY.SUB=VALUE``: the command's settings from a config file."""
    group = command.add_argument_group(
        "settings from a config file (in place of --settings)",
        f"The selected suite's block for `picat {name}`, as the workflow passes it; --suite picks the suite "
        "(default: the config's 'suite' key). The suite's amp, and the dataset spec of the benchmark, are "
        "taken too unless given.")
    group.add_argument("--config", dest="config_file", metavar="FILE",
                       help="a picat config (config.yaml), validated after the --set overrides")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                       help="override one config key (full dotted path, e.g. demo.pretrain.epochs=2); the value "
                            "is read as YAML (2, 0.5, true, [0, 1]); repeatable")


def _add_run_arguments(command: argparse.ArgumentParser, name: str, out_help: str,
                       settings_help: str | None = None) -> None:
    """The arguments every downstream run shares: settings, backbone source, seed, suite, output, device,
    precision and threads (the linear SVM's C search runs in as many processes)."""
    command.add_argument("--settings", type=_json_arg,
                         help=(settings_help or f"the downstream.{name} block, as JSON") + " (or --config)")
    command.add_argument("--checkpoint", help="a Pic@Point checkpoint.pt")
    command.add_argument("--random", type=_json_arg, help='random init instead: {"backbone", "options", "up_axis"}')
    command.add_argument("--seed", type=int, required=True)
    command.add_argument("--suite", choices=list(SUITES), help="required without --config")
    command.add_argument("--out", required=True, help=out_help)
    command.add_argument("--device", default="auto")
    command.add_argument("--amp", choices=AMP_CHOICES, default=AMP_DEFAULT,
                         help="forward passes in bf16 autocast, fp32 (default), or auto (bf16 on CUDA, fp32 elsewhere)")
    command.add_argument("--threads", type=int, default=2)
    _add_config_arguments(command, name)


def _add_training_arguments(command: argparse.ArgumentParser) -> None:
    """What every training loop takes: its logging block, and a stop for cluster time limits."""
    command.add_argument("--logging", type=_json_arg,
                         help='the suite\'s logging block, as JSON: {"tensorboard": bool, "wandb": {"enabled", '
                              '"project", "mode", "entity"}} (with --config: the suite\'s; default: log.csv and '
                              'TensorBoard when installed)')
    command.add_argument("--stop-after-epochs", type=int,
                         help="end after this many epochs in total; its resume state stays, and a rerun continues")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picat", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("render-env", help="build the BlenderProc render environment")
    command.add_argument("env_dir")
    command.set_defaults(run=_cmd_render_env)

    command = commands.add_parser("corpus", help="list (or generate) the corpus and write shard manifests")
    command.add_argument("--settings", type=_json_arg, required=True, help="the suite's corpus block, as JSON")
    command.add_argument("--objects-per-shard", type=int, required=True)
    command.add_argument("--out", required=True)
    command.add_argument("--heldout", action="store_true",
                         help="write the held-out objects' heldout_NNNNN manifests (never pre-trained on)")
    command.set_defaults(run=_cmd_corpus)

    command = commands.add_parser("render", help="render one shard's meshes with BlenderProc")
    command.add_argument("--manifest", required=True)
    command.add_argument("--out", required=True)
    command.add_argument("--env", required=True, help="render environment folder")
    command.add_argument("--settings", type=_json_arg, required=True, help="the suite's render block, as JSON")
    command.add_argument("--up-axis", choices=["x", "y", "z"], default="y")
    command.set_defaults(run=_cmd_render)

    command = commands.add_parser("pack", help="sample points and write one HDF5 shard")
    command.add_argument("--manifest", required=True)
    command.add_argument("--renders", required=True)
    command.add_argument("--out", required=True)
    command.add_argument("--n-points", type=int, required=True)
    command.add_argument("--seed", type=int, required=True)
    command.add_argument("--suite", default="")
    command.set_defaults(run=_cmd_pack)

    command = commands.add_parser("validate", help="validate shards and print a summary")
    command.add_argument("shards", nargs="+")
    command.add_argument("--check-projection", type=int, default=0, metavar="K",
                         help="also project the points of the first K objects into their masks")
    command.add_argument("--json", action="store_true", help="print the summary as JSON")
    command.set_defaults(run=_cmd_validate)

    command = commands.add_parser("index", help="validate shards and write their index (JSON)")
    command.add_argument("shards", nargs="+")
    command.add_argument("--out", required=True)
    command.set_defaults(run=_cmd_index)

    command = commands.add_parser("encode", help="cache the frozen 2D backbone's features of a shard's views")
    command.add_argument("--shard", required=True)
    command.add_argument("--out", required=True)
    command.add_argument("--image-backbone", type=_json_arg, required=True, help='{"name": ..., "weights": ...}')
    command.add_argument("--batch-size", type=int, default=40)
    command.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    command.add_argument("--device", default="auto")
    command.add_argument("--amp", choices=AMP_CHOICES, default="fp32", help="bf16 autocast, fp32, or auto (GPU: bf16)")
    command.add_argument("--threads", type=int, default=2)
    command.set_defaults(run=_cmd_encode)

    command = commands.add_parser("pretrain", help="Pic@Point pre-training of one (backbone, variant, seed)")
    command.add_argument("--shards", nargs="+", required=True)
    command.add_argument("--features", nargs="*", help="the shards' encode caches (omit to encode on the fly)")
    command.add_argument("--out", required=True, help="checkpoint.pt to write")
    command.add_argument("--backbone", choices=["dgcnn", "pointnext"], required=True)
    command.add_argument("--variant", required=True)
    command.add_argument("--seed", type=int, required=True)
    command.add_argument("--settings", type=_json_arg, help="the suite's pretrain block, as JSON (or --config)")
    command.add_argument("--image-backbone", type=_json_arg, help="needed without --features")
    command.add_argument("--up-axis", choices=["x", "y", "z"], default=UP_AXIS_DEFAULT)
    command.add_argument("--suite", default="")
    command.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    command.add_argument("--threads", type=int, default=2)
    command.add_argument("--amp", choices=AMP_CHOICES, default=AMP_DEFAULT,
                         help="bf16 autocast, fp32 (default), or auto (GPU: bf16)")
    command.add_argument("--nproc", type=int, default=1,
                         help="data-parallel processes on this node (the job's GPUs); above 1 the command re-executes "
                              "itself under torchrun (--standalone); 0 or 1: one process. Ignored inside torchrun")
    _add_training_arguments(command)
    _add_config_arguments(command, "pretrain")
    command.set_defaults(run=_cmd_pretrain)

    command = commands.add_parser("standins", help="write the demo suite's held-out benchmark stand-ins")
    command.add_argument("--settings", type=_json_arg, help="the demo suite's standins block, as JSON (or --config)")
    command.add_argument("--out", required=True, help="folder receiving the datasets in their genuine layouts")
    command.add_argument("--suite", choices=list(SUITES), default="",
                         help="with --config: the suite whose block to use (default: the config's 'suite')")
    _add_config_arguments(command, "standins")
    command.set_defaults(run=_cmd_standins)

    for name, help_text, run in (
            ("svm", "linear SVM on a frozen backbone's global features (Tables 1, 3)", _cmd_svm),
            ("finetune", "fine-tune PointNeXt-S for classification (Table 2)", _cmd_finetune),
            ("fewshot", "few-shot linear probe: 1, 5, 10, all objects per category (picat-only, not in the paper)",
             _cmd_fewshot)):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--benchmark", required=True)
        frozen = name in ("svm", "fewshot")
        command.add_argument("--dataset", type=_json_arg, help="the benchmark's reader spec, as JSON (with --config: "
                             "the suite's downstream.datasets entry)" + (" (not with --features)" if frozen else ""))
        if frozen:
            command.add_argument("--features", help="a features file (picat features) to fit on, in place of "
                                                    "--dataset and --checkpoint/--random; --amp is then the file's")
        _add_run_arguments(command, name, "the result records (JSON list, one per shot count) to write"
                           if name == "fewshot" else "the result record (JSON) to write")
        if name == "finetune":
            _add_training_arguments(command)
        command.set_defaults(run=run)

    command = commands.add_parser("features", help="a frozen backbone's global features of a benchmark's train and "
                                                   "test splits (.npz), read by svm and fewshot")
    command.add_argument("--benchmark", required=True)
    command.add_argument("--dataset", type=_json_arg, help="the benchmark's reader spec, as JSON (with --config: "
                                                           "the suite's downstream.datasets entry)")
    _add_run_arguments(command, "features", "the features file (.npz) to write",
                       '{"n_points", "batch_size"}, the keys downstream.svm and downstream.fewshot share, as JSON')
    command.add_argument("--imported", metavar="NAME", help="--checkpoint is an outside one (picat convert), scored "
                                                            "as init 'imported' NAME (the suite's imported.NAME)")
    command.set_defaults(run=_cmd_features)

    command = commands.add_parser("seg-standins", help="write the demo suite's part-segmentation and room stand-ins")
    command.add_argument("--settings", type=_json_arg,
                         help="the demo suite's seg_standins block, as JSON (or --config)")
    command.add_argument("--out", required=True, help="folder receiving ShapeNetPart's and S3DIS's genuine layouts")
    command.add_argument("--suite", choices=list(SUITES), default="",
                         help="with --config: the suite whose block to use (default: the config's 'suite')")
    _add_config_arguments(command, "seg-standins")
    command.set_defaults(run=_cmd_seg_standins)

    command = commands.add_parser("s3dis-convert", help="convert raw S3DIS rooms into Area_<k>_<room>.npy arrays")
    command.add_argument("--raw", required=True, help="Stanford3dDataset_v1.2_Aligned_Version folder")
    command.add_argument("--out", required=True, help="folder to write (replaced atomically)")
    command.set_defaults(run=_cmd_s3dis_convert)

    for name, help_text in (("partseg", "DGCNN part segmentation on ShapeNetPart (Table 4)"),
                            ("semseg", "PointNeXt-S scene segmentation on S3DIS (Table 5)")):
        command = commands.add_parser(name, help=help_text)
        if name == "partseg":
            command.add_argument("--dataset", type=_json_arg, help="ShapeNetPart's reader spec, as JSON (with "
                                                                   "--config: downstream.datasets.shapenetpart)")
        else:
            command.add_argument("--rooms", required=True, help="folder of converted Area_<k>_<room>.npy rooms")
        _add_run_arguments(command, name, "the result records (JSON list) to write")
        _add_training_arguments(command)
        command.set_defaults(run=_cmd_partseg if name == "partseg" else _cmd_semseg)

    command = commands.add_parser("figure4", help="Figure 4: local 2D-3D correspondence heatmaps of a checkpoint")
    command.add_argument("--checkpoint", required=True,
                         help="a Pic@Point checkpoint.pt (a variant with the local loss)")
    command.add_argument("--shards", nargs="+", required=True)
    command.add_argument("--features", nargs="*", help="the shards' encode caches (omit to encode on the fly)")
    command.add_argument("--n-objects", type=int, default=3)
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--out", required=True, help="PNG to write")
    command.add_argument("--summary", help="JSON file for the similarity ranks of the exemplar points")
    command.add_argument("--correspondence", help="the checkpoint's correspondence result (picat correspondence), "
                                                  "quoted in the summary and caption")
    command.add_argument("--device", default="cpu")
    command.set_defaults(run=_cmd_figure4)

    command = commands.add_parser("correspondence", help="top-1/top-5 retrieval of each local centre's own image "
                                                         "cell on held-out objects (picat-only, not in the paper)")
    command.add_argument("--checkpoint", required=True,
                         help="a Pic@Point checkpoint.pt (a variant with the local loss)")
    command.add_argument("--shards", nargs="+", required=True, help="held-out shards (heldout_NNNNN.h5)")
    command.add_argument("--features", nargs="+", required=True, help="their encode caches, in the same order")
    command.add_argument("--batch-size", type=int, required=True, help="object-views per batch of the batch task")
    command.add_argument("--seed", type=int, default=0, help="seeds the fixed batch composition")
    command.add_argument("--out", required=True, help="result JSON to write")
    command.add_argument("--device", default="cpu")
    command.add_argument("--threads", type=int, default=1)
    command.set_defaults(run=_cmd_correspondence)

    command = commands.add_parser("tables", help="collate result records into the tables and Figure 2")
    command.add_argument("--results", nargs="+", required=True)
    command.add_argument("--out", required=True, help="results/tables.csv")
    command.add_argument("--tables-dir", required=True, help="folder for table1.csv ...")
    command.add_argument("--figure2", required=True, help="Figure 2 PNG")
    command.add_argument("--figure4", nargs="*", default=[],
                         help="Figure 4 summary JSONs (picat figure4 --summary), collated into figure4.csv")
    command.add_argument("--correspondence", nargs="*", default=[],
                         help="correspondence results (picat correspondence), collated into correspondence.csv")
    command.add_argument("--paper-suite", type=_json_arg, required=True,
                         help='{"pretrain", "image_backbone"} of the paper suite (to count its trainable parameters)')
    command.set_defaults(run=_cmd_tables)

    command = commands.add_parser("check-config",
                                  help="validate a config file (with --set overrides) against the schema")
    command.add_argument("config", nargs="?", default="config.yaml")
    command.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                         help="override one config key first (e.g. demo.pretrain.epochs=2; YAML value); repeatable")
    command.add_argument("--print", action="store_true", help="print the effective config (YAML)")
    command.set_defaults(run=_cmd_check_config)

    # Utilities around the workflow (their modules import torch and tqdm only when run).
    add_convert(commands)
    add_fetch_data(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except USER_ERRORS as error:
        if os.environ.get("PICAT_DEBUG"):
            raise
        print(f"picat {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
