"""MovieLens-100K (F. M. Harper and J. A. Konstan, 2015, "The MovieLens Datasets: History and
Context", https://doi.org/10.1145/2827872): 100,000 ratings of 1,682 movies by 943 users, with
titles, release years and genres.

Not bundled (GroupLens's licence does not allow redistribution): it is read at run time from the
RecBole wheel on PyPI, which carries it as RecBole "atomic files" (tab-separated, headers
``name:type``). ``load_ml100k`` runs ``python -m pip download recbole==1.2.1 --no-deps`` into the
cache directory when the wheel is not there yet, extracts the two files it needs next to it and
parses them; nothing is installed.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

RECBOLE_SPEC = "recbole==1.2.1"
_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
_INTER = {"user_id": "user_id", "item_id": "item_id", "rating": "rating", "timestamp": "time"}
_ITEM = {"item_id": "item_id", "movie_title": "title", "release_year": "year", "class": "genres"}


@dataclass(frozen=True)
class MovieLens:
    """``interactions``: ``user_id, item_id, rating, time`` (raw ids, Unix seconds), one row per
    rating. ``items``: ``item_id, title, year, genres`` (``genres`` a list of strings)."""

    interactions: pd.DataFrame
    items: pd.DataFrame

    def item_texts(self) -> pd.Series:
        """Each item's text for a language model, indexed by raw item id:
        ``"Toy Story (1995). Genres: Animation, Children's, Comedy"``."""
        year = self.items["year"].map(lambda y: f" ({y})" if str(y) not in ("", "nan") else "")
        genres = self.items["genres"].map(", ".join)
        text = self.items["title"] + year + ". Genres: " + genres
        return pd.Series(text.to_numpy(), index=self.items["item_id"].to_numpy(), name="text")


def fetch_recbole_wheel(cache_dir: str | Path) -> Path:
    """The RecBole wheel in ``cache_dir``, downloaded with pip (no dependencies) if absent."""
    cache = Path(cache_dir)
    found = sorted(cache.glob("recbole-*.whl"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", RECBOLE_SPEC, "--no-deps", "--dest", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob("recbole-*.whl"))
    if done.returncode != 0 or not found:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return found[-1]


def _read_atomic(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}; it has {list(frame.columns)}")
    return frame[list(columns)].rename(columns=columns)


def load_ml100k(
    cache_dir: str | Path, *, wheel: str | Path | None = None, download: bool = True
) -> MovieLens:
    """MovieLens-100K from the RecBole wheel (``wheel``, or the one in / fetched into ``cache_dir``).

    Args:
        cache_dir: where the wheel and the extracted files live (keep it out of version control).
        wheel: a local ``recbole-*.whl`` to read instead of the one in ``cache_dir``.
        download: fetch the wheel with pip when neither is there (else ``FileNotFoundError``).
    """
    cache = Path(cache_dir)
    out = cache / "ml-100k"
    paths = {ext: out / f"ml-100k.{ext}" for ext in ("inter", "item")}
    if not all(p.exists() for p in paths.values()):
        if wheel is None:
            if not download and not list(cache.glob("recbole-*.whl")):
                raise FileNotFoundError(
                    f"no recbole wheel in {cache}: run `pip download {RECBOLE_SPEC} --no-deps -d {cache}`"
                )
            wheel = fetch_recbole_wheel(cache)
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for ext, path in paths.items():
                member = _MEMBER.format(ext)
                if member not in zf.namelist():
                    raise ValueError(f"{wheel} has no {member}: not a RecBole wheel with ml-100k")
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_bytes(zf.read(member))
                tmp.replace(path)
    inter = _read_atomic(paths["inter"], _INTER)
    inter = inter.astype({"user_id": "int64", "item_id": "int64", "rating": "float32", "time": "int64"})
    items = _read_atomic(paths["item"], _ITEM)
    items["item_id"] = items["item_id"].astype("int64")
    items["genres"] = items["genres"].str.split()
    return MovieLens(inter, items)
