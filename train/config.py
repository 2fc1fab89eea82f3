"""The training scripts' configs and command line: frozen dataclasses as flags, and errors as
one clear line.

Each script has one frozen dataclass config; ``parse_config`` turns its fields into kebab-case
flags, ``config_flags`` turns a config back into them, and ``run_cli`` runs a script's ``main``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from malgan.errors import DataError, ModelError
from train.runs import NonFiniteLossError

T = TypeVar("T")


def _flag_type(tp: Any) -> tuple[Any, dict[str, Any]]:
    origin = get_origin(tp)
    if tp is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if origin is tuple:
        inner = get_args(tp)[0]
        # "*" so that an empty tuple round-trips through config_flags.
        return inner, {"nargs": "*"}
    return tp, {}


def _at_least(tp: Callable[[str], Any], low: Any) -> Callable[[str], Any]:
    """An argparse type that parses with ``tp`` and refuses values below ``low``."""

    def parse(text: str) -> Any:
        value = tp(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = getattr(tp, "__name__", "value")
    return parse


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str = "") -> T:
    """Build a frozen dataclass config from command-line flags named after its fields.

    Each field ``foo_bar`` becomes ``--foo-bar``; booleans get ``--foo`` / ``--no-foo``; tuple
    fields take several values. Field metadata ``help`` is shown by ``--help``; ``required``
    makes the flag required (the field's default is then only for code that builds the config
    itself); ``min`` refuses smaller numbers with an error that names the flag.
    """
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    hints = get_type_hints(cls)
    for f in fields(cls):
        tp, extra = _flag_type(hints[f.name])
        kwargs: dict[str, Any] = {"default": f.default, "help": f.metadata.get("help", "")}
        if tp is not None:
            kwargs["type"] = tp
        kwargs.update(extra)
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if f.metadata.get("required"):
            kwargs["required"] = True
            del kwargs["default"]
        if "min" in f.metadata and tp is not None:
            kwargs["type"] = _at_least(tp, f.metadata["min"])
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    args = vars(parser.parse_args(argv))
    for f in fields(cls):
        if get_origin(hints[f.name]) is tuple:
            args[f.name] = tuple(args[f.name])
    return cls(**args)


def config_flags(cfg: Any) -> list[str]:
    """The command-line flags that rebuild ``cfg`` (inverse of ``parse_config``)."""
    flags: list[str] = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        name = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, tuple):
            flags += [name, *map(str, value)]
        else:
            flags += [name, str(value)]
    return flags


def replace(cfg: T, **changes: Any) -> T:
    """A copy of a frozen config with some fields changed."""
    return dataclasses.replace(cfg, **changes)


def configure_logging() -> None:
    """Plain log lines on stderr for the training scripts."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    # The ONNX exporter's optimisation passes log every rewrite at INFO.
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Errors a person can act on: their message is the whole story, so no traceback is shown.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    ModelError,
    NonFiniteLossError,
    FileNotFoundError,
    ValueError,
)
EXIT_USAGE = 2


def run_cli(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a script's ``main``; print an expected error as one clear line and exit with 2."""
    configure_logging()
    try:
        main(argv)
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
