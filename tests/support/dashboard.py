"""The dashboard in tests: sign in with an API key over real HTTP, read a page's CSRF and API tokens,
check that every form control has a label."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx

SESSION_COOKIE = "gpurelay_session"


def hidden_value(html: str, name: str) -> str:
    """The value of the hidden input ``name`` in ``html``."""
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert match is not None, f"no hidden input {name!r}"
    return match.group(1)


def page_token(html: str) -> str:
    """The short-lived API token a signed-in page holds."""
    match = re.search(r'<meta name="gpurelay-token" content="([^"]+)">', html)
    assert match is not None, "the page holds no API token"
    return match.group(1)


async def sign_in(http: httpx.AsyncClient, key: str, next_path: str = "/jobs") -> httpx.Response:
    """Open the sign-in form and post ``key`` with its CSRF token; the (unfollowed) answer."""
    form = await http.get(f"/login?next={next_path}")
    assert form.status_code == 200, form.text
    data = {"api_key": key, "csrf": hidden_value(form.text, "csrf"), "next": next_path}
    return await http.post("/login", data=data)


def set_cookie_header(response: httpx.Response, name: str) -> str:
    """The ``Set-Cookie`` header that sets ``name``."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}")


class _Controls(HTMLParser):
    """Form controls and what labels them."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self._label_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self._label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append({**a, "_wrapped": "1" if self._label_depth else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_depth -= 1


def unlabelled_controls(html: str) -> list[str]:
    """Form controls of ``html`` with no label (``for``, a wrapping label, or ``aria-label``)."""
    parser = _Controls()
    parser.feed(html)
    return [
        str(c.get("id") or c.get("name"))
        for c in parser.controls
        if not (c["_wrapped"] or c.get("aria-label") or (c.get("id") and c["id"] in parser.label_for))
    ]
