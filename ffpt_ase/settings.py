"""Settings defined once: dataclass fields carry their default, unit, help text and flag, and
drive the command-line options, the TOML keys and the ``--help`` text.

::

    @dataclass(kw_only=True)
    class MyConfig(RunSettings):
        time_ps: float = setting(10.0, "simulated time per trajectory", unit="ps")

    add_arguments(parser, MyConfig)          # --time-ps, "[ps] (default: 10.0)"
    cfg = from_sources(MyConfig, args=args)  # defaults < TOML file < flags given
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass

from .runtime import DTYPE_NAMES


#: what a setting is to a run folder (:mod:`ffpt_ase.runfolder`): part of the run's
#: fingerprint ("setting"), an input file whose content is fingerprinted ("input"), or free to
#: change when a run resumes ("free": it extends or schedules the run, e.g. epochs, threads)
ROLES = ("setting", "input", "free")


def setting(default=None, help: str = "", unit: str | None = None, flag: str | None = None,
            choices=None, nargs=None, cli: bool = True, default_factory=None,
            role: str = "setting"):
    """A dataclass field with what the command line, the TOML file and the run folder need
    to know."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    meta = {"help": help, "unit": unit, "flag": flag, "choices": choices, "nargs": nargs,
            "cli": cli, "role": role}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def redefault(cls, name: str, default):
    """The field ``name`` of ``cls`` (same help, unit and flag) with another default."""
    base = next(f for f in dataclasses.fields(cls) if f.name == name)
    return dataclasses.field(default=default, metadata=base.metadata)


@dataclass(kw_only=True)
class RunSettings:
    """What every run has: an output folder, a seed, the model precision, torch threads and
    device."""

    output: str = setting("runs/out", "output folder", flag="-o/--output", role="free")
    seed: int = setting(0, "random seed")
    dtype: str = setting("float32", "model precision", choices=DTYPE_NAMES)
    threads: int | None = setting(1, "torch threads (one is often fastest on a shared "
                                     "machine; 0 leaves torch's choice)", role="free")
    device: str = setting("cpu", "torch device (cpu, cuda, cuda:1, ...; under torchrun each "
                                 "process takes cuda:LOCAL_RANK)", role="free")

    def __post_init__(self):
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.threads is not None and self.threads < 0:
            raise ValueError(f"threads must be >= 1 (or 0 for torch's default), got "
                             f"{self.threads}")
        if not str(self.output).strip():
            raise ValueError("the output folder name is empty")

    def by_role(self) -> dict:
        """``{"setting": {...}, "input": {...}, "free": {...}}``: the field values grouped by
        their role for the run folder's fingerprint."""
        out = {role: {} for role in ROLES}
        for f in dataclasses.fields(self):
            out[f.metadata.get("role", "setting")][f.name] = getattr(self, f.name)
        return out


_TYPES = {"int": int, "float": float, "str": str}


def _kind(field) -> tuple:
    """``(python type, is_flag)`` from a field's annotation (a string under postponed
    evaluation of annotations)."""
    ann = str(field.type).replace(" ", "")
    if ann == "bool":
        return bool, True
    for name, typ in _TYPES.items():
        if ann in (name, f"{name}|None", f"None|{name}"):
            return typ, False
    return str, False          # model paths and the like


def _flags(field) -> list:
    flag = field.metadata.get("flag")
    return flag.split("/") if flag else ["--" + field.name.replace("_", "-")]


def help_text(field) -> str:
    """The field's help with its unit and default, as ``--help`` shows it."""
    meta = field.metadata
    text = meta.get("help", "")
    if meta.get("unit"):
        text += f" [{meta['unit']}]"
    default = field.default if field.default is not dataclasses.MISSING else None
    if default not in (None, "") and not (isinstance(default, bool) and not default):
        text += f" (default: {default})"
    return text


def cli_fields(cls, skip=()) -> list:
    return [f for f in dataclasses.fields(cls)
            if f.metadata.get("cli", False) and f.name not in skip]


def add_arguments(parser: argparse.ArgumentParser, cls, skip=(), required=()) -> None:
    """One option per field of ``cls`` that has :func:`setting` metadata; options not given
    are absent from the parsed namespace, so the dataclass (or a TOML file) supplies them."""
    for f in cli_fields(cls, skip):
        typ, is_flag = _kind(f)
        kw = {"help": help_text(f), "dest": f.name, "default": argparse.SUPPRESS}
        if is_flag:   # a setting that is on by default can be turned off: --no-NAME
            kw["action"] = argparse.BooleanOptionalAction if f.default is True \
                else "store_true"
        else:
            kw["type"] = typ
            if f.metadata.get("choices"):
                kw["choices"] = f.metadata["choices"]
            if f.metadata.get("nargs"):
                kw["nargs"] = f.metadata["nargs"]
            if f.metadata.get("unit"):
                kw["metavar"] = f.metadata["unit"].upper().replace(" ", "")
        if f.name in required:
            kw["required"] = True
        parser.add_argument(*_flags(f), **kw)


def from_sources(cls, file: str | None = None, section: str | None = None, args=None,
                 **overrides):
    """An instance of ``cls``: defaults < TOML ``file`` (its ``[section]`` table, or the top
    level) < options given in ``args`` < ``overrides`` (``None`` values ignored). Unknown TOML
    keys are an error. The names set explicitly are passed as ``explicit`` when ``cls`` has
    that field."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    if file:
        try:
            with open(file, "rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{file} is not valid TOML ({err})") from err
        raw = raw.get(section, raw) if section else raw
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"unknown keys in {file}: {sorted(unknown)}")
        values.update(raw)
    if args is not None:
        values.update({k: v for k, v in vars(args).items() if k in names})
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "explicit" in names:
        values["explicit"] = sorted(k for k in values if k != "explicit")
    return cls(**values)
