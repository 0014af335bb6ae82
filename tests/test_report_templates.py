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
    assert page.count('<table class="dataframe t">') == 26   # 25 + the fooled-subset table
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
    ok = render.render("sections/defence.html", d=d, accuracy=None, runs=None, ref=None, skipped={})
    assert "Adaptive post-training defence" in ok and "&ge; 0.9" in ok
    with pytest.raises(jinja2.UndefinedError, match="skipped"):
        render.render("sections/defence.html", d=d, accuracy=None, runs=None, ref=None)
    with pytest.raises(jinja2.UndefinedError, match="tau"):
        render.render("sections/defence.html", d={k: v for k, v in d.items() if k != "tau"}, accuracy=None, runs=None,
                      ref=None, skipped={})
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


def _section(page: str, heading: str) -> str:
    """The HTML of one ``<h2>`` section: from its heading to the next ``<h2>`` (or the end)."""
    start = page.index(f"<h2>{heading}</h2>")
    nxt = page.find("<h2>", start + 1)
    return page[start:nxt if nxt > 0 else len(page)]


def _rows(table_html: str) -> list[list[str]]:
    """The body rows of one pandas table: the text of each row's cells (th and td)."""
    body = table_html[table_html.index("<tbody>"):]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
            for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def _tables(fragment: str) -> list[str]:
    return re.findall(r'<table class="dataframe t">.*?</table>', fragment, re.S)


def test_noise_effect_finding_comes_first_and_the_long_rows_are_collapsed(built):
    """Issue 12: the finding (its conclusion, then one row per attacked set and compression)
    before anything long; the rows per set, compression and detector, and every measure,
    after it, each in a closed <details> whose summary says how many rows it holds."""
    from blinkbench.experiments import noise_effect

    p, page, _ = built
    sec = _section(page, "What per-frame noise does to the blink path")
    finding, conclusion = sec.index("<h3>Finding</h3>"), sec.index("score rises by 0.3 under noise &lt; the clean jitter")
    details = [m.start() for m in re.finditer(r"<details\b", sec)]
    assert len(details) == 2 and finding < conclusion < details[0]
    assert not _tables(sec[:finding]), "a table before the finding"
    # before the details: the overview (one row per attacked set and compression) and the
    # clean train jitter, both short
    shown = _tables(sec[:details[0]])
    assert [len(_rows(t)) for t in shown] == [2 * len(report_fixture.NOISE_COMPRESSIONS), 2]
    assert [r[:3] for r in _rows(shown[0])] == [[f"fgsm eps {e} on meso4", c, "2"] for c in reversed(
        report_fixture.NOISE_COMPRESSIONS) for e in ("12.75", "25.5")]
    # fgsm 12.75, h264: score changes +0.15 (blink_rate_rule) and -0.05 (minirocket), the control
    # half of each; EAR RMS 0.03 against 0.01 from compression alone (report_fixture's rows)
    assert _rows(shown[0])[0][3:] == ["0.05", "0.15", "blink_rate_rule", "0.025", "0.03", "0.01", "0.2"]
    # the details: closed, their summaries count their rows, and they hold all of them
    summary = noise_effect.compute(p)["summary"]
    full_finding = noise_effect.finding(summary)["table"]
    blocks = re.findall(r"<details\b([^>]*)>\s*<summary>(.*?)</summary>(.*?)</details>", sec, re.S)
    assert len(full_finding) == 8 and len(summary) == 12
    for (attrs, label, inner), n in zip(blocks, (len(full_finding), len(summary))):
        assert "open" not in attrs and f"({n} rows)" in label
        (table,) = _tables(inner)
        assert len(_rows(table)) == n
    assert "per attacked set, compression and blink detector" in blocks[0][1]
    assert "clean sets included" in blocks[1][1] and "score_control: the detector on the clean EAR" in blocks[1][2]
    assert {r[0] for r in _rows(_tables(blocks[1][2])[0])} == {"clean", "meso4"}


def test_defence_tables_fit_the_page(built):
    """Issue 12: the defence table was 18 columns of 20-character names, wider than the page.
    Now accuracy (rows: run x normal/robust; columns: crops/videos x before/after/change) and
    the runs' details are two tables of at most 10 columns with short headers the text
    explains; no missing value shows as <NA>, nan or None."""
    _, page, _ = built
    sec = _section(page, "Adaptive post-training defence")
    tables = _tables(sec)
    assert len(tables) == 2
    for t in tables:
        header_cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                        for c in re.findall(r"<th[^>]*>(.*?)</th>", t[:t.index("<tbody>")], re.S)]
        widest = max(len(re.findall(r"<t[hd]\b", tr)) for tr in re.findall(r"<tr>.*?</tr>", t, re.S))
        assert widest <= 10 and max(map(len, header_cells)) <= 12, (widest, header_cells)
        for row in _rows(t):
            assert not {"<NA>", "nan", "NaN", "None", "True", "False"} & set(row), row
    acc, runs = (_rows(t) for t in tables)
    # the ok run: normal and robust rows, 0.75 -> 0.8125 on crops and videos, change +0.0625
    assert acc == [["meso4", "pgd", "frozen", "normal", *["0.750", "0.812", "0.062"] * 2],
                   ["robust", *["0.750", "0.812", "0.062"] * 2]]
    assert runs == [["meso4", "pgd", "frozen", "ok", "12", "16", "20", "yes", "33.3", ""],
                    ["deepfool", "full", "error", "", "", "", "", "", "ValueError: <nan> & inf"]]
    for legend in ("kept: adversarial neighbours kept of the candidates", "FGSM moved: whether FGSM lowered",
                   "robust: the same under FGSM at eps 2/255"):
        assert legend in html.unescape(sec), legend


def test_figures_and_attack_tables_say_what_was_attacked_how_and_what_changed(built):
    """Every figure's caption is a sentence, not only its file name: the eps sweeps name the
    attack, the attacked detector, the eps values and the compressions and what they plot;
    the ROC and EAR figures say they are not attacked. The blink-path attack tables state the
    budget the attack ran with (its recorded params), the conditions and the crops."""
    p, page, _ = built
    caps = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)]
    srcs = [html.unescape(s) for s in re.findall(r'<img src="([^"]+)"', page)]
    assert len(caps) == len(srcs) == 6
    for cap, src in zip(caps, srcs):
        assert cap.strip().endswith(src) and len(cap.strip()) > len(src) + 40, cap
    sweep = {c.split()[0]: " ".join(c.split()) for c in caps if "study_" in c}
    assert set(sweep) == {"FGSM", "NES"}
    assert sweep["FGSM"].startswith("FGSM against the frame detector meso4 at eps 12.75, 25.5 (L-inf, 0-255 levels; eps 0: the clean set)")
    assert sweep["NES"].startswith("NES against the frame detector meso4 at eps 12.75 (")
    for c in sweep.values():
        assert "compression: none, h264_crf23" in c and "still calls fake (detection rate)" in c
    assert sum("not attacked" in c for c in caps) == 4 and sum(c.startswith("ROC of the ") for c in caps) == 2
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert ("How: eps 8 (L-inf, 0-255 levels), 60 optimisation steps; conditions: clean (the source video, not "
            "attacked), lossless (the adversarial video as written), h264_crf23 (the adversarial video after that "
            "compression)") in text
    lb = p["blink_attacks"]["landmark_breaker"]
    assert f"Attacked: 4 face crops of the test videos of {report_fixture.DATASET} , one per video" in text
    eps = f"{lb['eps']:g}" if lb.get("eps") is not None else "15"
    assert f"How: {', '.join(lb['attacks'])} at eps {eps} (L-inf, 0-255 levels" in text


def test_no_table_cell_or_sentence_shows_a_python_repr(built):
    """Missing values are blank and mappings are written out: no cell reads None, nan, <NA>,
    True or a list/dict repr, and no sentence prints a dict (the landmark backends' video
    counts, the reference table's unknown verdicts did)."""
    _, page, _ = built
    cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", page, re.S)]
    assert len(cells) > 300
    bad = [c for c in cells if c in {"None", "nan", "NaN", "<NA>", "NaT", "inf", "-inf", "True", "False"}
           or c[:1] in "[{" and c]
    assert not bad, bad
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert not re.findall(r"\{'|\['|: None\b", text), re.findall(r".{40}(?:\{'|\['|: None\b).{40}", text)
    flat = " ".join(text.split())
    assert "Videos per backend by status: mediapipe: 4 ok; pfld: 4 error." in flat
    assert ("Unknown verdicts (videos per set and detector): clean: blink/blink_rate_rule 2; "
            "meso4/eps12.75: blink/blink_rate_rule 2; meso4/eps25.5: blink/blink_rate_rule 2.") in flat


def test_jitter_table_lists_detectors_with_equal_figures_once():
    """Detectors that prepare their series alike have equal train-series jitter; the report
    shows each set of figures once, naming the detectors, instead of one copy per detector."""
    from blinkbench.report.build import _detectors_sharing_rows

    rows = [{"detector": d, "label": lab, "jitter_median": j, "noise_median": 0.01, "count": 5}
            for d in ("knn", "rule", "tsf") for lab, j in (("fake", 0.04), ("real", 0.09 if d == "tsf" else 0.08))]
    out = _detectors_sharing_rows(pd.DataFrame(rows))
    assert out.to_dict("records") == [
        {"detector": "knn, rule", "label": "real", "jitter_median": 0.08, "noise_median": 0.01, "count": 5},
        {"detector": "knn, rule, tsf", "label": "fake", "jitter_median": 0.04, "noise_median": 0.01, "count": 5},
        {"detector": "tsf", "label": "real", "jitter_median": 0.09, "noise_median": 0.01, "count": 5},
    ]
