"""The browser pages' scripts (the command room's console, the members' device page).

The suite runs without a browser. These checks catch what `node --check` does not: a
script that declares a global the browser holds unforgeable (`function top`) stops with
"Identifier 'top' has already been declared" and leaves the page empty (it happened)."""

from __future__ import annotations

import re

import pytest

from services.dispatch.console import CONSOLE_PAGE
from services.notify.page import DEVICE_PAGE

# window's [LegacyUnforgeable] properties: a script may not declare them again.
UNFORGEABLE = {"top", "window", "document", "location"}
DECLARED = re.compile(r"^(?:async\s+)?(?:function\s*\*?\s*|const\s+|let\s+|var\s+|class\s+)"
                      r"([A-Za-z_$][\w$]*)", re.MULTILINE)


def script(page: str) -> str:
    return page.split("<script>", 1)[1].split("</script>", 1)[0]


@pytest.mark.parametrize("page", [CONSOLE_PAGE, DEVICE_PAGE], ids=["console", "device"])
def test_no_page_declares_a_global_the_browser_will_not_give_up(page: str) -> None:
    names = set(DECLARED.findall(script(page)))
    assert names, "the pattern finds the page's declarations"
    assert not names & UNFORGEABLE, sorted(names & UNFORGEABLE)


def test_the_pattern_finds_the_declaration_that_broke_the_console() -> None:
    assert DECLARED.findall("function top(pairs) { return pairs; }\nconst x = 1;") == [
        "top", "x"]
