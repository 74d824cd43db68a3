"""The ``recforge`` command line.

recforge prepare CONFIG.yaml [--set key=value ...] fit the pipeline, write it and the encoded splits
recforge train CONFIG.yaml [--set key=value ...]   train and write a run directory
recforge evaluate RUN_DIR --data PATH              metrics of a trained run on labelled data / a log
recforge export RUN_DIR --format onnx|pt2 [--quantize int8|fp16]
recforge index RUN_DIR [--items PATH]              item vectors of a retrieval run -> index.pt
recforge serve RUN_DIR [--host H --port P]         serve a run over HTTP (FastAPI + uvicorn)
recforge models [NAME]                             the model registry, or one model's parameters and default
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from collections.abc import Sequence

import yaml

from recforge.files import atomic_write, atomic_write_text

log = logging.getLogger("recforge")


def _train(args: argparse.Namespace) -> int:
    if args.nproc is not None and args.nproc > 1:
        from recforge.distributed import launch, launched_by_torchrun

        if not launched_by_torchrun():
            return launch(_strip_nproc(args.argv), args.nproc)
    from recforge.runs import train

    train(args.config, args.set or [], run_dir=args.run_dir, resume=args.resume)
    return 0


def _strip_nproc(argv: list[str]) -> list[str]:
    """The command line without ``--nproc N`` / ``--nproc=N`` (the workers must not launch again)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def _prepare(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recforge.config import load_config
    from recforge.layout import RunLayout
    from recforge.runs import prepare_rows

    cfg, resolved = load_config(args.config, args.set or [])
    if cfg.trainer.preset.needs_log:
        raise ValueError(
            f"recforge prepare writes encoded labelled rows; trainer.preset {cfg.trainer.preset.value!r} "
            "trains on an interaction log: run `recforge train` directly"
        )
    layout = RunLayout.of(args.run_dir or cfg.run_dir)
    if layout.is_trained():
        raise FileExistsError(
            f"run directory {str(layout.root)!r} holds a trained run; preparing into it would replace the "
            "pipeline its model was trained with: use --run-dir"
        )
    layout.root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pipeline, splits = prepare_rows(cfg)
    pipeline.save(layout.pipeline)
    layout.data.mkdir(exist_ok=True)
    for name, ds in splits.items():
        cols = {}
        for col, t in ds.columns.items():
            a = t.numpy()
            cols[col] = pa.FixedSizeListArray.from_arrays(a.reshape(-1), a.shape[1]) if a.ndim == 2 else a
        atomic_write(layout.data / f"{name}.parquet", functools.partial(pq.write_table, pa.table(cols)))
    atomic_write_text(layout.config, yaml.safe_dump(resolved, sort_keys=False))
    for name, ds in splits.items():
        print(f"{name}: {len(ds):,} rows -> {layout.data / (name + '.parquet')}")
    print(f"pipeline: {layout.pipeline}  ({time.perf_counter() - t0:.1f}s)", flush=True)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from recforge.runs.evaluate import evaluate_run

    metrics = evaluate_run(args.run_dir, args.data, batch_size=args.batch_size)
    print(json.dumps(metrics, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from recforge.runs import export_run

    paths = export_run(args.run_dir, fmt=args.format, quantize=args.quantize)
    for p in paths:
        print(f"{p}  ({p.stat().st_size / 1024:.1f} KiB)")
    return 0


def _index(args: argparse.Namespace) -> int:
    from recforge.runs import build_item_index, load_run, read_source

    run = load_run(args.run_dir)
    items = read_source(args.items) if args.items else None
    index = build_item_index(run, items=items, metric=args.metric)
    print(f"indexed {len(index):,} items -> {run.path / 'index.pt'}")
    return 0


def _add_items(args: argparse.Namespace) -> int:
    from recforge.runs.generative import add_items

    added = add_items(args.run_dir, args.items)
    print(
        f"added {len(added.items):,} items to {args.run_dir}: ids {int(added.ids[0])}..{int(added.ids[-1])}, "
        f"e.g. {added.items[0]!r} -> semantic ID {added.codes[0].tolist()}"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import torch

    from recforge.bundle import load
    from recforge.serve import Batching, serve

    given = {"max_rows": args.batch_max_rows, "max_wait_ms": args.batch_wait_ms}
    batching = Batching(**{k: v for k, v in given.items() if v is not None})  # None: the default
    torch.set_num_threads(args.threads)
    bundle = load(args.run_dir)
    if args.max_body_bytes < 1:
        raise ValueError(f"--max-body-bytes must be >= 1, got {args.max_body_bytes}")
    print(f"serving {args.run_dir} on http://{args.host}:{args.port}  (OpenAPI: /docs)", flush=True)
    serve(
        bundle,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        batching=batching,
        max_body_bytes=args.max_body_bytes,
        allow_add_items=args.allow_add_items,
    )
    return 0


def _models(args: argparse.Namespace) -> int:
    from recforge.models.defaults import default_config, get_default
    from recforge.models.registry import FAMILIES, describe_model

    if args.name:
        print(describe_model(args.name))
        block = yaml.safe_dump(
            {"model": default_config(args.name)}, sort_keys=False, default_flow_style=None, width=100
        )
        print("\ndefault (recforge.models.defaults; model.inputs are feature groups, see docs/configs.md):")
        print(block.rstrip())
        required = get_default(args.name).required
        if required:
            print(f"  # required, no default exists: {', '.join(required)}")
        return 0
    for family, models in FAMILIES.items():
        print(f"{family}: {', '.join(sorted(models)) or '-'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recforge",
        description="recforge: train, evaluate and serve recommender models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'recforge COMMAND --help' for a command's options.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "prepare",
        help="fit the feature pipeline and write it with the encoded splits",
        description="Read the config's data, fit the feature pipeline on the training split only, "
        "and write RUN_DIR/pipeline/ plus RUN_DIR/data/{train,valid,test}.parquet (encoded ids and "
        "normalised values, exactly what training sees) and the resolved config.yaml.",
    )
    p.add_argument("config", help="path to the YAML config (see configs/adult_deepfm.yaml)")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="override config keys: --set a.b=1 c=2 (repeatable)",
    )
    p.add_argument("--run-dir", help="write here instead of the config's run_dir")
    p.set_defaults(func=_prepare)

    p = sub.add_parser(
        "train",
        help="train a model from a YAML config and write a run directory",
        description="Fit the feature pipeline on the training split, train the configured "
        "model with early stopping, evaluate on valid/test and write the run "
        "directory (config, pipeline, model, checkpoints, metrics, plot).",
    )
    p.add_argument("config", help="path to the YAML config (see configs/adult_deepfm.yaml)")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set trainer.n_epoch=3 seed=1 (repeatable)",
    )
    p.add_argument("--run-dir", help="write the run here instead of the config's run_dir")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="train data-parallel on N processes through torchrun (gloo on CPU, nccl on GPUs); "
        "with trainer.sharding the embedding tables are sharded over them by TorchRec",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on labelled data",
        description="Load a run directory and print its metrics on a data source.",
    )
    p.add_argument("run_dir", help="a run directory written by 'recforge train'")
    p.add_argument("--data", required=True, help="CSV/Parquet path or bundled:NAME/SPLIT")
    p.add_argument("--batch-size", type=int, default=8192)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "export",
        help="export a trained run to ONNX or torch.export (.pt2), optionally quantised",
        description="Write RUN_DIR/export/{model|user_tower|item_tower}.{onnx|pt2} and manifest.json. "
        "Ranking models return probabilities; retrieval models export each tower.",
    )
    p.add_argument("run_dir", help="a run directory written by 'recforge train'")
    p.add_argument("--format", default="onnx", help="onnx (default) or pt2")
    p.add_argument("--quantize", default=None, help="int8 (dynamic) or fp16; ONNX only")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "index",
        help="embed every item with a retrieval run's item tower and save the vector index",
        description="Write RUN_DIR/index.pt (exact inner-product index of item-tower vectors) so that "
        "recforge.load(RUN_DIR).recommend() and POST /recommend can retrieve.",
    )
    p.add_argument("run_dir", help="a retrieval run directory (its model is a two-tower model)")
    p.add_argument("--items", help="item table (CSV/Parquet) when the item tower reads more than the id")
    p.add_argument("--metric", default="ip", help="ip (default) or l2")
    p.set_defaults(func=_index)

    p = sub.add_parser(
        "add-items",
        help="give new items semantic IDs from their content (TIGER runs; nothing is retrained)",
        description="Read a table of new items (CSV/Parquet/JSON lines, or an S3-Rec item2attributes "
        "JSON object) holding the run's item column and the content its semantic IDs read (the "
        "attribute-id lists, the item text columns); encode them with the run's RQ-VAE and add them "
        "to the run's vocabulary and ID table, so that 'recforge serve' recommends them.",
    )
    p.add_argument("run_dir", help="a TIGER run directory written by 'recforge train'")
    p.add_argument("items", help="the new items' table")
    p.set_defaults(func=_add_items)

    p = sub.add_parser(
        "serve",
        help="serve a run directory over HTTP (needs the 'serve' extra)",
        description="Start a FastAPI/uvicorn server with POST /score, /rank, /recommend, GET /healthz, "
        "/metadata and the OpenAPI schema (/openapi.json, /docs).",
    )
    p.add_argument("run_dir", help="a run directory, or a serving directory with bundle.yaml")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument(
        "--batch-max-rows",
        type=int,
        default=None,
        help="micro-batching: rows of concurrent /score or /recommend requests run together "
        "(default 256; 1 turns batching off)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=None,
        help="micro-batching: how long a batch's first request waits for others (default 2)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="larger request bodies are answered 413 before they are read (default 4 MiB)",
    )
    p.add_argument(
        "--allow-add-items",
        action="store_true",
        help="open POST /items: new items get semantic IDs from their content while serving (TIGER runs)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "models",
        help="list the registered models by family, or one model's constructor parameters and default",
        description="Without NAME: every registered model by family. With NAME: its constructor's "
        "parameters, their types and defaults (the feature-list arguments are model.inputs in a "
        "config, the others model.params), then its registry default as a ready model: section.",
    )
    p.add_argument("name", nargs="?", help="a model name, e.g. DeepFM")
    p.set_defaults(func=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (ValueError, TypeError, KeyError, ImportError, OSError) as e:
        if args.verbose:
            raise
        text = str(e) if not isinstance(e, KeyError) or not e.args else str(e.args[0])
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError | FileExistsError):
            text = f"{e.strerror or e}" + (f": {e.filename!r}" if e.filename else "")
        print(f"recforge {args.command}: error: {' '.join(text.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
