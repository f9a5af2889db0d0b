"""The ``newsdesk`` command. Heavy parts (LiteLLM, llama.cpp, Gradio) are imported inside the
commands that need them, so ``newsdesk --help`` stays fast."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from newsdesk._exceptions import NewsdeskError, UserError
    from newsdesk.cli._app import app

    try:
        app()
    except NewsdeskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, UserError) else 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # no traceback reaches a user unless they ask for it
        if os.environ.get("NEWSDESK_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set NEWSDESK_DEBUG=1 to see the traceback)",
              file=sys.stderr)
        sys.exit(1)
