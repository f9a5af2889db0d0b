"""The web app (``newsdesk web``): Chat, News and History tabs on Gradio.

    from newsdesk.web import build_app, serve
    serve(port=7860)                  # or: build_app().launch()

Gradio is imported only when an app is built; without it, ``MissingExtraError`` says which extra
to install. Add a tab with ``register_tab(builder)`` or ``build_app(extra_tabs=[builder])``: the
builder gets a ``WebContext`` (shared gateway, store, model settings) and creates a ``gr.Tab``.
"""

from __future__ import annotations

from newsdesk.web._app import TabBuilder, WebContext, build_app, register_tab, serve

__all__ = ["TabBuilder", "WebContext", "build_app", "register_tab", "serve"]
