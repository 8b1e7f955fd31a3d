"""Settings defined once: dataclass fields drive the CLI options, the TOML keys and --help."""

import argparse
import dataclasses

import pytest

from ffpt_ase.applications.h2combustion.metad import ChannelMetadConfig
from ffpt_ase.cli.main import build_parser
from ffpt_ase.settings import add_arguments, cli_fields, from_sources, help_text
from ffpt_ase.simulate.metad import MetadConfig
from ffpt_ase.simulate.stability import StabilityConfig
from ffpt_ase.training.config import TrainConfig


@pytest.mark.parametrize("command, cls", [("train", TrainConfig), ("metad", ChannelMetadConfig),
                                          ("stability", StabilityConfig)])
def test_every_setting_is_an_option_with_its_default_and_unit(command, cls, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in cli_fields(cls):
        flag = (f.metadata.get("flag") or "--" + f.name.replace("_", "-")).split("/")[-1]
        assert flag in text, (command, f.name)
        assert " ".join(help_text(f).split()) in text, (command, f.name)
        if f.metadata.get("unit"):
            assert f"[{f.metadata['unit']}]" in help_text(f)
    assert "(default: 300.0)" in text or command == "train"


def test_shared_settings_are_defined_once_and_redefaulted():
    """The MD settings come from one class; metadynamics changes two defaults only."""
    fields = {f.name: f for f in dataclasses.fields(MetadConfig)}
    stab = {f.name: f for f in dataclasses.fields(StabilityConfig)}
    assert fields["temperature_K"].metadata is stab["temperature_K"].metadata
    assert fields["timestep_fs"].metadata == stab["timestep_fs"].metadata
    assert (fields["timestep_fs"].default, stab["timestep_fs"].default) == (0.2, 0.5)
    assert (fields["friction_per_ps"].default, stab["friction_per_ps"].default) == (20.0, 2.0)


def test_defaults_toml_and_flags_in_that_order(tmp_path):
    toml = tmp_path / "t.toml"
    toml.write_text('[train]\nstage = "pretrain"\nepochs = 7\nlr = 0.01\n')
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    args = parser.parse_args(["--epochs", "9", "--max-time", "60"])
    cfg = from_sources(TrainConfig, toml, "train", args)
    assert (cfg.stage, cfg.epochs, cfg.lr, cfg.max_time_s, cfg.batch_size) == \
        ("pretrain", 9, 0.01, 60.0, 32)
    assert set(cfg.explicit) == {"stage", "epochs", "lr", "max_time_s"}
    toml.write_text('[train]\nepochz = 3\n')
    with pytest.raises(ValueError, match="unknown keys.*epochz"):
        from_sources(TrainConfig, toml, "train")
    toml.write_text('[train\n')
    with pytest.raises(ValueError, match="not valid TOML"):
        from_sources(TrainConfig, toml, "train")


def test_version_flag(capsys):
    from ffpt_ase import __version__
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert __version__ in capsys.readouterr().out
