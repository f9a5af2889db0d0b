"""The ``newsdesk`` command. Heavy parts (LiteLLM, llama.cpp, Gradio) are imported inside the
commands that need them, so ``newsdesk --help`` stays fast."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import typer

    from newsdesk._exceptions import NewsdeskError, UserError
    from newsdesk.cli._app import app

    try:
        # Not standalone: typer would print usage errors as boxed panels; the README promises
        # one line, and this handler is the one place that prints errors.
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's errors, as typer carries them
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `newsdesk`: the help, as before
            ctx = getattr(exc, "ctx", None)
            print(ctx.get_help() if ctx is not None else exc, file=sys.stderr)
        else:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except NewsdeskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, UserError) else 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # no traceback reaches a user unless they ask for it
        if os.environ.get("NEWSDESK_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (set NEWSDESK_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(exc: Exception) -> str:
    """A click error as one line, naming the command's --help when it has a command."""
    fmt = getattr(exc, "format_message", None)
    text = " ".join(str(fmt() if callable(fmt) else exc).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(exc, "exit_code", 0) == 2:
        text += f" (see '{ctx.command_path} --help')"
    return text
