"""The library's command lines: tyro parses them from the config dataclasses.

`parse(Command, argv, prog)` is `tyro.cli` with the library's conventions:
- flags are the fields' names in kebab case, a bool is a pair of flags (`--resume` /
  `--no-resume`: a resumed run's saved config may hold either), a nested config's fields keep
  their own names where the command says so (`tyro.conf.arg(name="")`), choices come from the
  fields' Literal types;
- bad input ends the program with exit code 2 and ONE line on stderr, `error: ...`, naming the
  input and the fix, instead of tyro's multi-line box (the same form as the errors the
  commands raise themselves, see `fail`);
- Ctrl-C (SIGINT) and SIGTERM end a long command with ONE line, `interrupted: ...`, saying where
  it stopped and how to continue, and the shell's exit codes 130 / 143 (`interruptible`); the
  files it leaves are complete (every writer writes atomically).

tyro's help is unchanged (boxes, defaults, the fields' comments and docstrings).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, NoReturn, TypeVar

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the program is, as Ctrl-C raises KeyboardInterrupt: `finally`
    blocks run and half-written temporary files are removed on the way out."""


def _on_signal(signum, frame) -> None:
    from .files import deliver_interrupt  # held while a file is being written, then raised
    deliver_interrupt(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())


def _close_progress_bars() -> None:
    try:
        from tqdm import tqdm
        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    except Exception:  # noqa: BLE001 - a progress bar must never hide the message
        pass


def _quiet_finalizers(unraisable) -> None:
    """sys.unraisablehook after an interrupt: drop the failures of finalizers, report the rest."""
    if getattr(unraisable.object, "__name__", "") != "__del__":
        sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def interruptible(hint: str | Callable[[], str]):
    """Run a command's work so that SIGINT / SIGTERM end it with one line on stderr,
    `interrupted: <where it stopped>; <how to continue>`, and exit code 130 / 143 (128 + the
    signal), never a traceback. The message is the interrupt's own text when the code that was
    interrupted raised one with a message (the trainer names its step), else `hint`."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        yield
    except KeyboardInterrupt as e:
        message = str(e.args[0]) if e.args else (hint() if callable(hint) else hint)
        # The signal can land inside a constructor (a tqdm bar's, say): the half-built object's
        # __del__ then fails when it is collected, and Python prints that as an "Exception ignored"
        # traceback. The process is ending; those are not errors of the command.
        sys.unraisablehook = _quiet_finalizers
        _close_progress_bars()  # so the line starts on a line of its own
        print(f"interrupted: {' '.join(message.split())}", file=sys.stderr, flush=True)
        raise SystemExit(128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
