"""Fuzzing (issue 20): hostile values through the pipeline and hostile bodies through the server.

Every case must end in a result or a clear error: from the pipeline a ``ValueError``/``TypeError``/
``KeyError`` raised by recforge itself (its message names the column), from the server any status
but 5xx, with a JSON body in recforge's words. Hypothesis runs derandomized (a fixed seed per
test), so a failure reproduces.
"""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recforge
from recforge.models import matching
from recforge.preprocess import Bucketize, Categorical, FeaturePipeline, MultiValue, Numeric, SequenceColumn
from recforge.serve import _by_recforge, create_app
from serving_runs import TinyTwoTower, make_two_stage

# RECFORGE_FUZZ_EXAMPLES=5000 RECFORGE_FUZZ_SEED=random runs a longer, freshly seeded search.
FUZZ = settings(
    max_examples=int(os.environ.get("RECFORGE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=os.environ.get("RECFORGE_FUZZ_SEED") != "random",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- values a careless or hostile user may put in a cell ------------------------------------------
HUGE_INTS = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 2**70, -(2**100), 10**400])
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e300, -1e300, 3.5e38, 1e-320])
TEXT = st.text(max_size=6) | st.sampled_from(["a", "b", "a|b", "", "|", "NaN", "None", "\x00"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | HUGE_INTS | FLOATS | TEXT
CELLS = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(TEXT, SCALARS, max_size=2)


def clean_frame(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "c": rng.choice(["a", "b", "c"], n),
            "k": rng.integers(0, 5, n),
            "x": rng.normal(size=n),
            "m": ["a|b", "b", "c|a|b", ""] * (n // 4),
            "s": [[1, 2], [3], [], [2, 2, 2]] * (n // 4),
            "label": [0, 1] * (n // 2),
        }
    )


def specs() -> list:
    return [
        Categorical("c", fill_value="?"),
        Categorical("k"),
        Numeric("x"),
        Numeric("x2", fill="median", normalize="minmax"),
        Bucketize("xb", bins=3),
        MultiValue("m"),
        SequenceColumn("s", max_len=3),
    ]


def assert_clear(e: BaseException) -> None:
    assert isinstance(e, ValueError | TypeError | KeyError), f"{type(e).__name__}: {e}"
    assert _by_recforge(e), f"raised outside recforge: {type(e).__module__}.{type(e).__name__}: {e}"
    text = str(e)
    assert text and "Traceback" not in text


def check_output(out: dict[str, np.ndarray], n: int) -> None:
    for name, a in out.items():
        assert len(a) == n, name
        if a.dtype.kind == "f":
            assert np.isfinite(a).all(), name  # never NaN/inf into a model
            assert a.dtype == np.float32
        else:
            assert a.dtype == np.int64 and (a >= 0).all(), name


@pytest.fixture(scope="module")
def fitted() -> FeaturePipeline:
    df = clean_frame()
    df["x2"] = df["x"] * 3
    df["xb"] = df["x"]
    return FeaturePipeline(specs(), label="label").fit(df)


@FUZZ
@given(
    column=st.sampled_from(["c", "k", "x", "x2", "xb", "m", "s", "label"]),
    cells=st.lists(CELLS, min_size=1, max_size=4),
)
def test_transform_of_hostile_cells_gives_a_result_or_a_clear_error(fitted, column, cells):
    df = clean_frame(len(cells) * 4).iloc[: len(cells)].reset_index(drop=True)
    df["x2"] = df["xb"] = df["x"]
    df[column] = pd.Series(cells, dtype=object)
    for call in (lambda: fitted.transform(df), lambda: fitted.transform_records(df.to_dict("records"))):
        try:
            out = call()
        except Exception as e:
            assert_clear(e)
        else:
            check_output(out, len(df))


@FUZZ
@given(
    column=st.sampled_from(["c", "k", "x", "m", "s", "label"]), cells=st.lists(CELLS, min_size=0, max_size=6)
)
def test_fit_on_hostile_cells_gives_a_result_or_a_clear_error(column, cells):
    df = clean_frame(8).iloc[: len(cells)].reset_index(drop=True)
    df[column] = pd.Series(cells, dtype=object)
    pipe = FeaturePipeline(
        [Categorical("c"), Categorical("k"), Numeric("x"), MultiValue("m"), SequenceColumn("s", max_len=3)],
        label="label",
    )
    try:
        pipe.fit(df)
        out = pipe.transform(df)
    except Exception as e:
        assert_clear(e)
    else:
        check_output(out, len(df))
        for v in pipe.to_dict()["numeric"].values():
            assert all(math.isfinite(x) for x in v.values())


@FUZZ
@given(
    names=st.lists(st.sampled_from(["c", "x", "label", "c", "other"]), min_size=1, max_size=5),
    rows=st.integers(0, 3),
)
def test_tables_with_odd_shapes_give_a_result_or_a_clear_error(names, rows):
    data = np.arange(rows * len(names)).reshape(rows, len(names)) % 2
    df = pd.DataFrame(data, columns=names)
    pipe = FeaturePipeline([Categorical("c"), Numeric("x")], label="label")
    try:
        pipe.fit(df)
    except Exception as e:
        assert_clear(e)


# -- HTTP bodies -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    mp = pytest.MonkeyPatch()
    mp.setitem(matching.MODELS, "TinyTwoTower", TinyTwoTower)
    bundle = recforge.load(make_two_stage(tmp_path_factory.mktemp("fuzz")))
    with TestClient(create_app(bundle, max_body_bytes=50_000), raise_server_exceptions=False) as c:
        yield c
    mp.undo()


COLUMNS = ["user_id", "item_id", "cat", "age", "hist_item_id", "unknown"]
ROWS = st.dictionaries(st.sampled_from(COLUMNS), CELLS, max_size=6)
GOOD_USER = {"user_id": "u1", "hist_item_id": "i1|i2", "age": 30.0, "item_id": "i3", "cat": "good"}


def mutated_rows() -> st.SearchStrategy:
    """Mostly valid rows with one or two hostile cells, plus rows of pure noise."""
    one = st.builds(
        lambda k, v, drop: {**{c: x for c, x in GOOD_USER.items() if c != drop}, k: v},
        st.sampled_from(COLUMNS),
        CELLS,
        st.sampled_from([*COLUMNS, None]),
    )
    return st.lists(one | ROWS, min_size=0, max_size=4)


BODIES = st.one_of(
    st.builds(lambda rows: ("/score", {"rows": rows}), mutated_rows()),
    st.builds(
        lambda rows, k, extra: ("/recommend", {"users": rows, "k": k, **extra}),
        mutated_rows(),
        st.integers(-3, 2000) | HUGE_INTS | FLOATS | TEXT,
        st.dictionaries(st.sampled_from(["exclude_seen", "rerank", "exclude"]), CELLS, max_size=2),
    ),
    st.builds(
        lambda user, cands: ("/rank", {"user": user, "candidates": cands}),
        CELLS | ROWS,
        st.lists(CELLS | ROWS, max_size=4) | CELLS,
    ),
    st.builds(
        lambda path, anything: (path, anything), st.sampled_from(["/score", "/rank", "/recommend"]), CELLS
    ),
)


def assert_answer(r, path) -> None:
    assert r.status_code < 500, f"{path}: {r.status_code} {r.text[:300]}"
    body = r.json()  # always JSON
    if r.status_code >= 400:
        detail = json.dumps(body)
        for foreign in ("Traceback", "pyarrow", "Arrow", "C long", 'File "'):
            assert foreign not in detail, detail


@FUZZ
@given(body=BODIES)
def test_hostile_json_bodies_never_get_a_5xx(client, body):
    path, payload = body
    r = client.post(
        path,
        content=json.dumps(payload, allow_nan=True).encode(),
        headers={"content-type": "application/json"},
    )
    assert_answer(r, path)


@FUZZ
@given(
    path=st.sampled_from(["/score", "/rank", "/recommend", "/metadata", "/nowhere"]),
    raw=st.binary(max_size=200)
    | st.sampled_from(
        [
            b"",
            b"[" * 5000,
            b"{" * 100000,
            b'{"rows": [' + b"1," * 20000 + b"1]}",
            b'{"rows":[{"age":1e999}]}',
            b'\xff\xfe{"rows":1}',
            b"null",
            b"NaN",
        ]
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
def test_hostile_bytes_never_get_a_5xx(client, path, raw, content_type):
    r = client.post(path, content=raw, headers={"content-type": content_type} if content_type else {})
    assert_answer(r, path)
