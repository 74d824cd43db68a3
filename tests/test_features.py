import pytest

from recforge.features import (
    DenseFeature,
    Pooling,
    RandomUniform,
    SequenceFeature,
    SparseFeature,
    auto_embed_dim,
    dedup,
    from_dict,
    to_dict,
)


def test_auto_embed_dim_fills_in():
    f = SparseFeature("item", vocab_size=10_000)
    assert f.embed_dim == auto_embed_dim(10_000) == 60
    assert SequenceFeature("hist", vocab_size=16).embed_dim == 12


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SparseFeature("c1", vocab_size=0), "'c1': vocab_size must be a positive int"),
        (lambda: SparseFeature("c1", vocab_size=5, embed_dim=-1), "'c1': embed_dim"),
        (lambda: SparseFeature("c1", vocab_size=5, padding_idx=7), "'c1': padding_idx 7"),
        (lambda: SparseFeature("c1", vocab_size=5, shared_with="c1"), "shared_with must name another"),
        (lambda: SequenceFeature("h", vocab_size=5, pooling="avg"), "'h': pooling must be one of"),
        (lambda: SequenceFeature("h", vocab_size=5, max_len=0), "'h': max_len"),
        (lambda: DenseFeature(""), "name must be a non-empty string"),
        (lambda: DenseFeature("price", embed_dim=0), "'price': embed_dim"),
    ],
)
def test_invalid_specs_name_the_feature(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_pooling_parses_strings_case_insensitively():
    assert SequenceFeature("h", 10, pooling="SUM").pooling is Pooling.SUM


def test_specs_are_frozen_and_hashable():
    f = SparseFeature("a", 3, embed_dim=4)
    with pytest.raises(AttributeError):
        f.vocab_size = 5  # type: ignore[misc]
    assert len({f, SparseFeature("a", 3, embed_dim=4)}) == 1


def test_dict_round_trip():
    specs = [
        DenseFeature("price", embed_dim=3),
        SparseFeature("item", 100, embed_dim=8, initializer=RandomUniform(-0.1, 0.1)),
        SequenceFeature("hist", 100, embed_dim=8, pooling="concat", shared_with="item", max_len=20),
    ]
    assert [from_dict(to_dict(f)) for f in specs] == specs
    with pytest.raises(ValueError, match="feature type must be one of"):
        from_dict({"type": "Bogus", "name": "x"})


def test_dedup_refuses_conflicting_specs():
    a = SparseFeature("a", 3, embed_dim=4)
    assert dedup([a, a, DenseFeature("d")]) == [a, DenseFeature("d")]
    with pytest.raises(ValueError, match="declared twice"):
        dedup([a, SparseFeature("a", 4, embed_dim=4)])
