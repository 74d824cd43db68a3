import pytest

from recforge.choices import Choice


class GRUType(Choice):
    AUGRU = "AUGRU"
    AGRU = "AGRU"


class BridgeType(Choice):
    HADAMARD = "hadamard"


def test_parse_is_case_insensitive_and_idempotent():
    assert GRUType.parse("augru") is GRUType.AUGRU
    assert BridgeType.parse("HADAMARD") is BridgeType.HADAMARD
    assert BridgeType.parse(BridgeType.HADAMARD) is BridgeType.HADAMARD


def test_unknown_values_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"gru_type must be one of 'AUGRU', 'AGRU', got 'LSTM'"):
        GRUType.parse("LSTM")
    with pytest.raises(ValueError, match=r"model.bridge: must be one of 'hadamard'"):
        BridgeType.parse("x", where="model.bridge:")
