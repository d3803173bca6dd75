"""The library's command lines: tyro parses them from the config dataclasses.

`parse(Command, argv, prog)` is `tyro.cli` with the library's conventions:
- flags are the fields' names in kebab case, a bool is a pair of flags (`--resume` /
  `--no-resume`: a resumed run's saved config may hold either), a nested config's fields keep
  their own names where the command says so (`tyro.conf.arg(name="")`), choices come from the
  fields' Literal types;
- bad input ends the program with exit code 2 and ONE line on stderr, `error: ...`, naming the
  input and the fix, instead of tyro's multi-line box (the same form as the errors the
  commands raise themselves, see `fail`).

tyro's help is unchanged (boxes, defaults, the fields' comments and docstrings).
"""
from __future__ import annotations

import sys
from typing import NoReturn, TypeVar

import tyro
import tyro._errors as tyro_errors  # tyro is pinned exactly (requirements.txt): its parse-error hook

T = TypeVar("T")


class UsageError(ValueError):
    """Bad command-line input, as one line."""


def report(message) -> int:
    """The one way a command line reports bad input: one line on stderr, `error: ...`; returns
    the exit code 2 (for commands whose main returns its exit code)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    return 2


def fail(message) -> NoReturn:
    """`report` and exit with code 2."""
    raise SystemExit(report(message))


def _flag(argument) -> str:
    try:
        return argument.display_name()
    except Exception:  # an internal tyro type changed shape: name the problem without it
        return "an argument"


def _help(prog: str) -> str:
    return f"see {prog} --help"


def _one_line(event, prog: str) -> str:
    """The tyro parse-error event as one line naming the input and the fix."""
    E = tyro_errors
    if isinstance(event, E.InvalidChoice):
        return f"{_flag(event.argument)} {event.value!r} is not a choice; use one of {', '.join(event.choices)}"
    if isinstance(event, E.InstantiationFailure):
        if event.argument is None:  # a ValueError of the dataclass itself: already our one line
            return event.message
        arg = event.argument
        from .typed import type_name
        expected = type_name(arg.field.type_stripped)
        return f"{_flag(arg)}: {event.message}; expected {expected}"
    if isinstance(event, E.MissingArgs):
        names = ", ".join(_flag(a.arg) for a in event.missing_arguments)
        return f"missing {names}; {_help(prog)}"
    if isinstance(event, E.MissingSubcommand):
        names = ", ".join(getattr(event.subcommand_spec, "parser_from_name", {}) or [])
        found = f" (got {event.found_token!r})" if event.found_token else ""
        return f"a command is needed{found}: one of {names}; {_help(prog)}"
    if isinstance(event, E.UnrecognizedArgs):
        return f"unrecognized argument{'s' if len(event.tokens) > 1 else ''} {' '.join(event.tokens)}; {_help(prog)}"
    if isinstance(event, E.BadValue):
        return f"{_flag(event.argument)} needs a value; {_help(prog)}"
    try:  # any other event: tyro's own title and text, flattened
        title, contents = E._render(event)
        text = " ".join(str(c) for c in contents)
        return f"{title}: {text}; {_help(prog)}"
    except Exception:
        return f"bad command line; {_help(prog)}"


def parse(command: type[T], argv: list[str] | None, prog: str, description: str | None = None,
          default: T | None = None) -> T:
    """`tyro.cli(command)` on argv (None: sys.argv[1:]); bad input -> `fail` (exit 2, one line)."""
    def hook(event) -> None:
        raise UsageError(_one_line(event, event.prog or prog))

    kwargs = {} if default is None else {"default": default}
    try:
        with tyro_errors.on_parse_error(hook):
            return tyro.cli(command, args=sys.argv[1:] if argv is None else list(argv), prog=prog,
                            description=description, **kwargs)
    except UsageError as e:
        fail(str(e))
