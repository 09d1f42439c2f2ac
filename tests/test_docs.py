"""The documentation keeps up with the code: every hook is documented on the docs site.

asherah_core/tests checks each hook's docstring; this checks the site's hooks reference: a
section per hook headed by its name and parameters, each parameter described in it, no section
for a hook that does not exist, and the plugin guide pointing at each hook.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asherah_core import hookspecs

from ._venv import REPO

DOCS = REPO / "docs"
HOOKS_PAGE = DOCS / "reference" / "hooks.md"
GUIDE = DOCS / "plugin-guide.md"
HOOK_HEADING = re.compile(r"^## `(asherah_\w+)\(([^)]*)\)`$", re.MULTILINE)


def hookspec_functions() -> list[Callable[..., Any]]:
    return [
        f
        for name, f in vars(hookspecs).items()
        if name.startswith("asherah_") and callable(f) and hasattr(f, "asherah_spec")
    ]


def signature(hook: Callable[..., Any]) -> str:
    return f"{hook.__name__}({', '.join(inspect.signature(hook).parameters)})"


def sections(page: Path) -> dict[str, str]:
    """The ``## `hook(params)``` sections of `page`, by heading text, up to the next ``## ``."""
    text = page.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for match in HOOK_HEADING.finditer(text):
        end = text.find("\n## ", match.end())
        found[f"{match[1]}({match[2]})"] = text[match.end() : end if end >= 0 else len(text)]
    return found


@pytest.mark.parametrize("hook", hookspec_functions(), ids=lambda f: f.__name__)
def test_every_hook_has_a_section_with_its_parameters(hook: Callable[..., Any]) -> None:
    documented = sections(HOOKS_PAGE)
    assert signature(hook) in documented, (
        f"docs/reference/hooks.md has no section '## `{signature(hook)}`'; "
        f"it documents {sorted(documented) or 'no hook'}"
    )
    body = documented[signature(hook)]
    for parameter in inspect.signature(hook).parameters:
        assert re.search(rf"^\| `{parameter}` \|", body, re.MULTILINE), (
            f"the section of {hook.__name__} has no table row describing `{parameter}`"
        )


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    real = {signature(hook) for hook in hookspec_functions()}
    stale = sorted(set(sections(HOOKS_PAGE)) - real)
    assert not stale, f"docs/reference/hooks.md documents hooks that are not in hookspecs: {stale}"


def test_the_hooks_page_renders_each_specification() -> None:
    text = HOOKS_PAGE.read_text(encoding="utf-8")
    for hook in hookspec_functions():
        assert f"::: asherah_core.hookspecs.{hook.__name__}" in text


@pytest.mark.parametrize("hook", hookspec_functions(), ids=lambda f: f.__name__)
def test_the_plugin_guide_links_each_hook(hook: Callable[..., Any]) -> None:
    anchor = re.sub(r"[^\w-]", "", signature(hook).lower())
    link = f"[`{signature(hook)}`](reference/hooks.md#{anchor})"
    assert link in GUIDE.read_text(encoding="utf-8"), f"the plugin guide does not link {link}"
