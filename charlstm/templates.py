"""Filling the HTML pages charlstm writes (the inspect report, the exported model) from
their templates, once, with a real template engine.

Every value is escaped for the place it lands: HTML text and attributes by Jinja2's
autoescaping, data for a script by `tojson` (which writes <, >, & and ' as \\u escapes,
so no text, title or file name can close a <script> or open a tag). The page's own
JavaScript comes from its own file beside the template and goes in verbatim (never read
as a template itself). Jinja2 comes with
PyTorch; it is a dependency of charlstm in its own right too.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2
import markupsafe


@cache
def _environment(package: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "web"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a name the code forgot is an error, not ""
        keep_trailing_newline=True,
    )
    # Compact, and in the order the code built it (the weights' offsets read better so).
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "separators": (",", ":")}
    return env


def render_page(package: str, template: str, script: str, **context: Any) -> str:
    """`package`/web/`template` filled with `context`, and with the JavaScript file
    `package`/web/`script` as `script`."""
    code = (resources.files(package) / "web" / script).read_text(encoding="utf-8")
    page = _environment(package).get_template(template)
    return page.render(script=markupsafe.Markup(code), **context)
