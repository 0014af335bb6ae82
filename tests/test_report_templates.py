"""The HTML report rendered from jinja2 templates (issue 11, point 4): every section on a
small synthetic run (tests/report_fixture.py), names with markup escaped, a missing template
variable failing loudly, the templates shipped and declared as the report step's inputs."""

from __future__ import annotations

import html
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pandas as pd
import pytest
import yaml

import report_fixture
from blinkbench.core import io, paths
from blinkbench.report import render

ROOT = Path(__file__).resolve().parents[1]
REPORT_SRC = ROOT / "src" / "blinkbench" / "report"
TEMPLATES = REPORT_SRC / render.TEMPLATES
# every element the report's templates and pandas' to_html write; anything else came from data
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "code", "a", "em", "ul",
             "li", "table", "thead", "tbody", "tr", "th", "td", "figure", "img", "figcaption", "details", "summary"}


class _Page(HTMLParser):
    """Tags, headings, image sources and visible text of a page (entities decoded)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.headings, self.images, self.text = set(), [], [], []
        self._heading = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = []
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


@pytest.fixture
def built(params, tmp_path, monkeypatch):
    """The report built over the synthetic run: (params, page text, parsed page)."""
    from blinkbench.report import build

    p = report_fixture.make(tmp_path, monkeypatch, params)
    out = build.build(p)
    page = out.read_text()
    return p, page, _Page(page)


def test_every_section_heading_table_and_figure_is_on_the_page(built):
    _, page, parsed = built
    missing = [h for h in report_fixture.SECTION_HEADINGS if h not in parsed.headings]
    assert not missing, f"headings not on the page: {missing}; page has {parsed.headings}"
    # the figures the sections link exist beside the page (2 EAR plots, 2 ROC, 2 eps sweeps)
    out_dir = Path(paths.PATTERNS["report"]).parent
    assert len(parsed.images) == 6 and all((out_dir / src).is_file() for src in parsed.images), parsed.images
    # numbers computed by Python reach the page through the templates
    text = " ".join(" ".join(parsed.text).split())
    assert "precision 0.600, recall 0.750 (3 of 4 annotated, 5 detected)" in text
    assert "neighbours kept when their embedding's cosine with the clean crop's is \u2265 0.9" in text
    assert "normal 95.23 % and robust 8.12 % before" in text and "robust 55.6-70.1 %" in text
    assert "Not post-trained: meso4/deepfool: no crops & <none>" in text
    assert "Not run: pfld/blink_rate_rule: no model <path> & co" in text
    assert page.count('<table class="dataframe t">') == 23
    metrics = io.read_json(paths.PATTERNS["metrics"])
    assert {"demo", "blink_detectors", "frame_detectors", "blink_best_of", "study", "reference_attack",
            "landmark_compare", "noise_effect", "blink_attacks", "defence"} <= set(metrics)


def test_markup_in_names_and_errors_is_escaped(built):
    _, page, parsed = built
    # only the report's own elements: a video name "<b>1</b>" or an error "<moov>" made none
    assert parsed.tags <= PAGE_TAGS, parsed.tags - PAGE_TAGS
    assert "<b>" not in page and "<moov>" not in page and "<none>" not in page
    assert html.escape(report_fixture.NASTY_VIDEO, quote=False) in page       # escaped, not dropped
    text = " ".join(parsed.text)
    for shown in (report_fixture.NASTY_VIDEO, "cannot decode <moov> atom", "low fps <10> & jitter",
                  "RuntimeError: <boom> & bust", "ValueError: <nan> & inf",
                  "score rises by 0.3 under noise < the clean jitter & more", "none <lossless>"):
        assert shown in text, shown
    # the figure of that video: src and caption decode back to its real file name
    ear = [s for s in parsed.images if "ear_fake_" in s]
    assert ear == [f"demo/ear_{report_fixture.NASTY_VIDEO}.png"]


def test_a_missing_template_variable_fails_loudly(params):
    d = params["defence"]
    ok = render.render("sections/defence.html", d=d, results=None, ref=None, skipped={})
    assert "Adaptive post-training defence" in ok and "&ge; 0.9" in ok
    with pytest.raises(jinja2.UndefinedError, match="skipped"):
        render.render("sections/defence.html", d=d, results=None, ref=None)
    with pytest.raises(jinja2.UndefinedError, match="tau"):
        render.render("sections/defence.html", d={k: v for k, v in d.items() if k != "tau"}, results=None, ref=None,
                      skipped={})
    with pytest.raises(jinja2.UndefinedError):         # also inside a test ({% if %}), not only when printed
        render.render("sections/dataset.html", name="x", ds={"adapter": "a", "root": "r"}, n_videos=0, csv="c",
                      counts=pd.DataFrame(), bad=None, warnings=None, by_label=None, plots=[], videos=pd.DataFrame())


def test_autoescape_is_on_and_only_pandas_tables_and_partials_are_trusted():
    env = render.environment()
    assert env.undefined is jinja2.StrictUndefined
    assert env.from_string("{{ x }}").render(x="<i>&") == "&lt;i&gt;&amp;"
    assert "No datasets configured." in render.render("base.html", sections=["", ""])      # every section empty
    for t in TEMPLATES.rglob("*.html"):
        assert "|safe" not in t.read_text().replace(" ", ""), f"{t.name}: mark fragments safe in render.py only"


def test_no_html_left_in_the_report_python():
    pattern = re.compile(r"<(td|th|tr|table|h[1-6]|p|figure|img|a |ul|li|code|em|details)\b|f\"<|f'<")
    hits = [f"{f.name}:{i}: {line.strip()}" for f in sorted(REPORT_SRC.glob("*.py"))
            for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, "HTML belongs in report/templates/:\n" + "\n".join(hits)


def test_templates_ship_with_the_package_and_are_the_report_steps_inputs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["blinkbench"]
    files = sorted(p.relative_to(REPORT_SRC.parent).as_posix() for p in TEMPLATES.rglob("*") if p.is_file())
    assert len(files) >= 10
    shipped = {p.relative_to(REPORT_SRC.parent).as_posix() for pat in patterns for p in REPORT_SRC.parent.glob(pat)}
    unshipped = [f for f in files if f not in shipped]
    assert not unshipped, f"not in [tool.setuptools.package-data]: {unshipped}"
    assert sorted(Path(p) for p in render.template_files()) == sorted(TEMPLATES.rglob("*.html"))
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]
    assert "src/blinkbench/report/templates" in stage["deps"]
    assert "template_files" in (ROOT / "rules" / "report.smk").read_text()


def test_sparse_run_renders_the_optional_parts_absent(params, tmp_path, monkeypatch):
    """The other branch of every optional part: no evaluation finished (no matrix, no ROC),
    nothing post-trained but a skip, no noise reference or finding, no blink-path results."""
    import shutil

    from blinkbench.experiments import noise_effect
    from blinkbench.report import build, defence

    p = report_fixture.make(tmp_path, monkeypatch, params)
    monkeypatch.setattr(build, "detector_results", lambda params, family="blink": pd.DataFrame(
        [{"detector": "meso4" if family == "frame" else "tsf", "train": "demo", "test": "demo", "status": "missing"}]))
    monkeypatch.setattr(defence, "defence_results", lambda params: (pd.DataFrame(), None))
    tables = noise_effect.compute(p)
    monkeypatch.setattr(noise_effect, "compute", lambda params, models=None: {"summary": tables["summary"]})
    monkeypatch.setattr(noise_effect, "finding", lambda summary, ref=None: {})
    shutil.rmtree(Path(paths.PATTERNS["landmark_breaker"].format(dataset="demo")).parent)
    page = _Page(build.build(p).read_text())
    heads = page.headings
    assert heads.count("Metrics") == 2 and not [h for h in heads if h.startswith("Cross-dataset matrix")]
    assert not [s for s in page.images if s.startswith("roc_")]
    assert "Adaptive post-training defence" in heads and "Attacks on the blink path" in heads
    assert "Finding" not in heads and not [h for h in heads if h.startswith("Landmark Breaker")]
    text = " ".join(" ".join(page.text).split())
    assert "Not post-trained: meso4/deepfool: no crops & <none>" in text and "Reference (" not in text
    assert "Jitter of the clean train series by label" not in text
    assert "missing" in text  # the unfinished evaluations are rows, never dropped
