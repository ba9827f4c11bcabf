import re

import pytest

from edge3u.config import Config, ConfigError, default_config_path, load_config


def table(config, **changes):
    t = config.to_dict()
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if section.startswith("layer"):
            t["network"]["layers"][int(section[5:])][key] = value
        else:
            t[section][key] = value
    return t


def test_default_config_is_the_fashion_mnist_network(fashion_config):
    assert load_config() == fashion_config
    assert default_config_path().name == "fashion_mnist.toml"
    fc1, fc2 = fashion_config.layers
    assert (fc1.in_modes, fc1.out_modes) == ((4, 7, 4, 7), (4, 4, 8, 4))
    assert (fc2.in_modes, fc2.out_modes) == ((16, 32), (2, 5))


def test_round_trip_through_dict(fashion_config):
    assert Config.from_dict(fashion_config.to_dict()) == fashion_config


def test_config_is_frozen(fashion_config):
    with pytest.raises(AttributeError):
        fashion_config.train.epochs = 3


def test_max_ranks_capped_by_the_reshape(fashion_config):
    # bond 1 of fc1 joins (n0 m0) = 16 values on its left: its rank cannot exceed 16
    assert fashion_config.layer("fc1").max_ranks[0] == 1
    assert fashion_config.layer("fc1").max_ranks[1] == min(16, fashion_config.layer("fc1").max_rank)


@pytest.mark.parametrize("change, message", [
    ({"layer0__in_modes": [4, 7, 4, 8]}, r"\[4, 7, 4, 8\] multiplies to 896, but the layer size is 784"),
    ({"layer0__out_modes": [4, 4, 32]}, r"same number of entries"),
    ({"layer0__max_rank": 0}, r"max_rank must be an integer from 1 to 256, not 0"),
    ({"layer0__activation": "tanh"}, r"activation must be one of 'relu', 'none', not 'tanh'"),
    ({"layer1__activation": "relu"}, r"logits: its activation must be 'none'"),
    ({"train__weight_bits": 6}, r"train.weight_bits must be one of 4, 8, not 6"),
    ({"train__activation_bits": 1}, r"activation_bits must be an integer from 2 to 16, not 1"),
    ({"train__batch_size": 100, "train__micro_batch": 3}, r"batch_size 100 must be a multiple of"),
    ({"train__lr": -1.0}, r"train.lr must be a number > 0.0, not -1.0"),
    ({"train__rank_prior": "laplace"}, r"'half_cauchy', 'log_uniform', not 'laplace'"),
    ({"quant__weight_bits": 5}, r"quant.weight_bits must be one of 1, 2, 3, 4, 'ternary', not 5"),
    ({"quant__activation_bits": 9}, r"quant.activation_bits must be an integer from 2 to 8, not 9"),
    ({"hardware__pe_rows": 0}, r"hardware.pe_rows must be an integer from 1 to 64, not 0"),
    ({"hardware__requant_multipliers": "dsp48"},
     r"hardware.requant_multipliers must be 'lut' or 'dsp', not 'dsp48'"),
    ({"hardware__order_slack": 1.5}, r"hardware.order_slack must be a number >= 0.0 and <= 1.0"),
    ({"hardware__activation_lanes": 0},
     r"hardware.activation_lanes must be an integer from 1 to 1024, not 0"),
    ({"train__low_precision": "yes"}, r"low_precision must be true or false, not 'yes'"),
])
def test_bad_values_are_named(fashion_config, change, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(table(fashion_config, **change))


def test_unknown_keys_and_sections(fashion_config):
    t = fashion_config.to_dict()
    t["train"]["epochz"] = 3
    with pytest.raises(ConfigError, match=r"unknown key train.epochz; valid keys: seed, epochs"):
        Config.from_dict(t)
    t = fashion_config.to_dict()
    t["trian"] = {}
    with pytest.raises(ConfigError, match=r"unknown section \[trian\]"):
        Config.from_dict(t)


def test_layers_must_chain_and_fit_the_data(fashion_config):
    t = fashion_config.to_dict()
    t["network"]["layers"][1].update(in_features=256, in_modes=[16, 16])
    with pytest.raises(ConfigError, match=r"'fc2'.*in_features is 256.*'fc1', has out_features 512"):
        Config.from_dict(t)
    t = fashion_config.to_dict()
    t["data"]["dataset"] = "digits"
    with pytest.raises(ConfigError, match=r"digits images have 64 pixels"):
        Config.from_dict(t)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    text = default_config_path().read_text()
    wrong.write_text(re.sub(r"max_rank = \d+", "max_rank = -2", text, count=1))
    with pytest.raises(ConfigError, match=r"wrong.toml: .*max_rank.*not -2"):
        load_config(wrong)


def test_replace_validates(fashion_config):
    assert fashion_config.replace(train={"epochs": 3}).train.epochs == 3
    with pytest.raises(ConfigError, match="train.epochs"):
        fashion_config.replace(train={"epochs": 0})


def test_layers_must_group_the_previous_out_modes(digits_config):
    table = digits_config.to_dict()
    table["network"]["layers"][1]["in_modes"] = [4, 8]  # fc1's out_modes are [2, 4, 4]
    with pytest.raises(ConfigError, match=r"in_modes \[4, 8\] must group the out_modes "
                                          r"\[2, 4, 4\] of 'fc1'"):
        Config.from_dict(table)
