"""What every tab gets: the shared ``NewsDesk`` (gateway and store) and the app-wide model
settings. Its own module, so the tabs and the app that builds them import it, not each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsdesk.web._security import KeyPolicy

if TYPE_CHECKING:
    import gradio as gr

    from newsdesk._client import Gateway
    from newsdesk.news import NewsDesk, Store


@dataclass
class WebContext:
    """What a tab builder gets: the shared news desk (its gateway and store) and the app-wide
    model settings (components: use them as event inputs to get the user's current choice).

    ``key_policy`` says which bases may get the server's API keys; ``api_key`` is the user's
    own key field (for a base of their own): pass ``key_policy.api_key_for(base, user_key)``."""

    desk: NewsDesk
    model: gr.Dropdown
    api_base: gr.Textbox
    default_model: str
    key_policy: KeyPolicy = field(default_factory=KeyPolicy)
    api_key: gr.Textbox | None = None

    @property
    def gateway(self) -> Gateway:
        return self.desk.gateway

    @property
    def store(self) -> Store:
        return self.desk.store

    def chosen_model(self, model: str | None, api_base: str | None) -> tuple[str, str | None]:
        """The model a user picked (the app's default when the field is empty) and its API base."""
        name = (model or "").strip() or self.default_model
        return name, api_base_for(name, api_base)


TabBuilder = Callable[[WebContext], None]


def api_base_for(model: str, api_base: str | None) -> str | None:
    """The API base to use: none for the embedded model (the field may still hold a server's)."""
    if model.startswith("local/"):
        return None
    return (api_base or "").strip() or None
