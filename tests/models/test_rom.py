import json

import pytest
import torch

from edge3u.models.golden import IntLayer, IntNetwork, Requant, int_forward
from edge3u.models.rom import RomError, decode_codes, encode_codes, load_rom, write_rom


@pytest.mark.parametrize("bits", [1, 2, 3, 4, "ternary"])
def test_code_words_round_trip(bits):
    codes = (torch.tensor([-1, 0, 1]) if bits == "ternary"
             else torch.arange(-(2 ** bits - 1), 2 ** bits, 2))
    words = encode_codes(codes, bits)
    assert int(words.min()) >= 0 and int(words.max()) < 2 ** (2 if bits == "ternary" else bits)
    assert torch.equal(decode_codes(words, bits), codes)


def network(bits=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    top = 2 ** bits - 1

    def core(shape):
        return 2 * torch.randint(0, 2 ** bits, shape, generator=g) - top

    fc1 = IntLayer("fc1", [core((1, 8, 2, 3)), core((3, 8, 4, 1))], (1, 0),
                   [Requant(20000, 18, -8, 7)], torch.randint(-99, 99, (8,), generator=g),
                   Requant(17000, 17, 0, 15), 255)
    fc2 = IntLayer("fc2", [core((1, 2, 2, 2)), core((2, 4, 5, 1))], (0, 1),
                   [Requant(30000, 16, -8, 7)], torch.randint(-99, 99, (10,), generator=g),
                   None, 15)
    return IntNetwork([fc1, fc2])


def matching_config(digits_config, max_rank=4, fc1_in_modes=(8, 8)):
    from edge3u.config import Config

    table = digits_config.to_dict()
    table["network"]["layers"] = [
        dict(name="fc1", in_features=64, out_features=8, in_modes=list(fc1_in_modes),
             out_modes=[2, 4], max_rank=max_rank, activation="relu"),
        dict(name="fc2", in_features=8, out_features=10, in_modes=[2, 4], out_modes=[2, 5],
             max_rank=max_rank, activation="none")]
    return Config.from_dict(table)


def test_write_then_load_is_the_same_network(tmp_path, digits_config):
    net = network()
    config = matching_config(digits_config)
    manifest = write_rom(net, tmp_path, config, weight_bits=2, activation_bits=4)
    loaded, again = load_rom(tmp_path, config)
    assert again == json.loads((tmp_path / "manifest.json").read_text()) == manifest
    x = torch.randint(0, 256, (6, 64))
    assert torch.equal(int_forward(x, loaded), int_forward(x, net))
    for a, b in zip(net.layers, loaded.layers):
        assert all(torch.equal(p, q) for p, q in zip(a.cores, b.cores))
        assert torch.equal(a.bias, b.bias) and a.order == b.order
    assert (tmp_path / "fc1_core0.hex").read_text().split()[0] in "0123"


def test_corruption_is_detected(tmp_path, digits_config):
    write_rom(network(), tmp_path, digits_config, weight_bits=2, activation_bits=4)
    path = tmp_path / "fc2_core1.hex"
    lines = path.read_text().split()
    lines[0] = "3" if lines[0] != "3" else "0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RomError, match="fc2_core1.hex: sha256 does not match"):
        load_rom(tmp_path)
    path.unlink()
    with pytest.raises(RomError, match="fc2_core1.hex is missing"):
        load_rom(tmp_path)


def test_manifest_lies_are_caught(tmp_path, digits_config):
    write_rom(network(), tmp_path, digits_config, weight_bits=2, activation_bits=4)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RomError, match="version 99; this edge3u reads 'edge3u-rom' version 1"):
        load_rom(tmp_path)
    manifest["version"] = 1
    manifest["layers"][0]["cores"][0]["words"] = 5
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RomError, match="fc1_core0.hex: holds 48 words, the manifest says 5"):
        load_rom(tmp_path)
    with pytest.raises(RomError, match="does not exist: run `edge3u export`"):
        load_rom(tmp_path / "nowhere")


def test_config_mismatch_is_refused(tmp_path, digits_config):
    write_rom(network(), tmp_path, digits_config, weight_bits=2, activation_bits=4)
    with pytest.raises(RomError, match=r"fc1: cores have modes"):
        load_rom(tmp_path, matching_config(digits_config, fc1_in_modes=(4, 16)))
    with pytest.raises(RomError, match=r"fc1: ranks \[3\] exceed the config's maximum \[2\]"):
        load_rom(tmp_path, matching_config(digits_config, max_rank=2))
