"""Jinja2 rendering of the report: every piece of the page's HTML lives in
``report/templates/`` (``base.html`` and one partial per section); the section modules
compute tables and figures and hand them over as data.

Autoescaping is on for every template, and undefined variables raise
(:class:`jinja2.StrictUndefined`), so a value is never written into the page unescaped and
a misspelt or missing key fails the report instead of leaving a blank. Two kinds of HTML
fragment are trusted, each in exactly one place here:

- a DataFrame rendered by pandas (:func:`frame`, the ``frame`` filter): ``to_html`` escapes
  every cell and header itself (``escape=True``);
- a rendered partial (:func:`render`): the output of an autoescaping template, placed into
  ``base.html`` by the page.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import Markup

if TYPE_CHECKING:  # rules/report.smk imports this module at parse time: pandas and jinja2 load when used
    import pandas as pd
    from jinja2 import Environment

TEMPLATES = "templates"     # folder inside this package; shipped as package data (pyproject)

_env: "Environment | None" = None


def template_files() -> list[str]:
    """Every template the report reads, as paths (the report step's inputs in
    rules/report.smk: editing a template reruns the report)."""
    root = Path(str(files("blinkbench.report") / TEMPLATES))
    return sorted(str(p) for p in root.rglob("*.html"))


def frame(df: pd.DataFrame, fmt: str = ".3g", index: bool = False) -> Markup:
    """``df`` as the report's table (class ``t``): floats with format spec ``fmt``, blanks
    for missing values; pandas escapes the cells."""
    html = df.to_html(index=index, na_rep="", float_format=lambda x: format(x, fmt), border=0, classes="t",
                      escape=True)
    return Markup(html)  # trusted: pandas escaped every cell and label above


def environment() -> Environment:
    """The report's template environment (built once): package templates, autoescape on,
    StrictUndefined, and the ``frame`` filter for DataFrames."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    global _env
    if _env is None:
        env = Environment(loader=PackageLoader("blinkbench.report", TEMPLATES), autoescape=True,
                          undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        env.filters["frame"] = frame
        _env = env
    return _env


def render(template: str, **context) -> Markup:
    """Render ``template`` (a name under ``templates/``) with ``context``; the result is
    the template's autoescaped output, so it can go into the page as it is."""
    return Markup(environment().get_template(template).render(**context))  # trusted: autoescaped template output
