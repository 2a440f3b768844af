import pytest

from configs.schema import Config, ConfigError, DataConfig, apply_overrides, from_dict, load_config


def test_defaults_validate_and_round_trip():
    config = Config().validate()
    assert from_dict(Config, config.to_dict()) == config


def test_overrides_parse_literals_and_strings():
    config = apply_overrides(Config(), ["data.batch_size=16", "data.rescale=minmax", "data.data_dir=/tmp/x"])
    assert (
        config.data.batch_size == 16 and config.data.rescale == "minmax" and config.data.data_dir == "/tmp/x"
    )
    assert apply_overrides(config, ["data.rescale=None"]).data.rescale is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batch_sise=16", r"unknown config key 'data.batch_sise'.*known: \[.*'batch_size'"),
        ("dta.batch_size=16", "unknown config section 'dta'"),
        ("data.batch_size=sixteen", "data.batch_size must be of type int, got 'sixteen'"),
        ("data.batch_size=1.5", "data.batch_size must be of type int"),
        ("data.rotation_augmentation=1", "data.rotation_augmentation must be of type bool"),
        ("data.batch_size=0", "data.batch_size must be positive"),
        ("model.encoder_out=0", "model.encoder_out must be positive"),
        ("model.n_rotations=6", r"model.max_frequency must be >= 1 and, for group 'dihedral', below"),
        ("model.max_frequency=0", r"model.max_frequency must be >= 1"),
        ("data.rescale=zscore", r"data.rescale must be one of \(None, 'minmax'\)"),
        ("model.encoder_pooling=max", r"model.encoder_pooling must be one of \('after', 'strided'\)"),
        ("data.batch_size", "must look like section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


def test_o2_encoder_needs_a_last_map_of_more_than_one_pixel():
    overrides = ["model.image_size=16", "model.encoder_downsample=[True, True, True, True]"]
    with pytest.raises(ConfigError, match="model.image_size 16 with 4 pooling steps leaves a 1-pixel map"):
        apply_overrides(Config(), overrides)
    apply_overrides(Config(), [*overrides, "model.encoder=vanilla"])  # a plain CNN can end on 1 pixel


def test_from_dict_rejects_unknown_nested_keys_and_non_sections():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['data.nope'\]"):
        from_dict(Config, {"data": {"nope": 1}})
    with pytest.raises(ConfigError, match="data must be a section"):
        from_dict(Config, {"data": 3})


def test_assignments_in_a_config_module_are_checked(tmp_path, monkeypatch):
    (tmp_path / "my_config.py").write_text(
        "from configs.schema import Config\nconfig = Config()\nconfig.data.batch_size = '64'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="data.batch_size must be of type int, got '64'"):
        load_config("my_config")
    assert isinstance(DataConfig().batch_size, int)
