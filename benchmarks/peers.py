"""Peer libraries in their own virtual environments under ``benchmarks/.venvs/``.

Each peer is installed the way ``/work/shared/BENCHMARKS.md`` describes, so that no CUDA build of
torch is pulled: the CPU torch wheel first, then the peer with ``--no-deps``, then its light
dependencies. A venv is created once and reused by every benchmark (a marker file records that the
install finished, so an interrupted install is redone rather than half-used).

    python benchmarks/peers.py torch-rechub      # create (if missing) and print the interpreter
"""

from __future__ import annotations

import argparse
import fcntl
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"
TORCH = "torch==2.13.0"


@dataclass(frozen=True)
class Peer:
    """How to install one peer: pip argument lists run in order."""

    name: str
    steps: tuple[tuple[str, ...], ...]
    check: str  # a Python statement that must run once installed


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer(
            "torch-rechub",
            ((TORCH,), ("--no-deps", "torch-rechub==0.9.0"), ("numpy", "pandas", "scikit-learn", "tqdm")),
            "import torch_rechub.models.ranking, torch_rechub.trainers, torch_rechub.utils.data",
        ),
        Peer(
            "torchrec",
            (
                (TORCH,),
                (
                    "fbgemm-gpu-cpu==1.8.0",
                    "tensordict",
                    "torchmetrics==1.0.3",
                    "tqdm",
                    "pyre-extensions",
                    "numpy",
                    "iopath",
                ),
                ("--no-deps", "torchrec==1.8.0"),
            ),
            "import torchrec",
        ),
        Peer(
            "recbole",
            (
                (TORCH,),
                ("--no-deps", "recbole==1.2.1"),
                # numpy < 2: RecBole 1.2.1 aliases np.float_ (gone in numpy 2); pandas < 2.2: its in-place
                # fillna on column views needs pandas without copy-on-write
                ("numpy<2", "scipy", "pandas<2.2", "tqdm", "colorlog==4.7.2", "colorama==0.4.4"),
                ("scikit-learn", "pyyaml", "tensorboard", "texttable", "psutil", "tabulate"),
            ),
            "import recbole.model.sequential_recommender, recbole.trainer, recbole.data, recbole.config",
        ),
        Peer(
            "deepctr-torch",
            ((TORCH,), ("--no-deps", "deepctr-torch==0.3.0"), ("scikit-learn", "tqdm")),
            "import deepctr_torch",
        ),
    )
}


def python_of(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def ensure(name: str, *, quiet: bool = True) -> Path:
    """The interpreter of peer ``name``'s venv, creating and installing it when missing."""
    try:
        peer = PEERS[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r}; known: {sorted(PEERS)}") from None
    root = VENVS / name
    marker = root / ".recforge-installed"
    py = python_of(name)
    if marker.exists() and py.exists():
        return py
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f".{name}.lock", "w") as lock:  # one installer at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            _install(peer, root, py, quiet)
    return py


def _install(peer: Peer, root: Path, py: Path, quiet: bool) -> None:
    if root.exists():
        shutil.rmtree(root)  # an interrupted install: start over
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    flags = ["-q"] if quiet else []
    for step in peer.steps:
        subprocess.run([str(py), "-m", "pip", "install", *flags, *step], check=True)
    subprocess.run([str(py), "-c", peer.check], check=True)
    (root / ".recforge-installed").write_text(
        " ; ".join(" ".join(s) for s in peer.steps) + "\n", encoding="utf-8"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("peer", choices=sorted(PEERS))
    args = ap.parse_args()
    print(ensure(args.peer, quiet=False))


if __name__ == "__main__":
    sys.exit(main())
