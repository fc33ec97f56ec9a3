"""The pages' foundation: charts are accessible SVG with exact amounts, templates escape, the
static files are served, and chromium renders the stylesheet from /static."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from playwright.sync_api import Page

from gateway.pages.charts import bar_chart, stacked_bar_chart
from gateway.pages.templating import ENV, usd
from tests.support.gateway import RunningGateway

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    # The chart is inline SVG inside HTML (no xmlns needed there); parsed here as XML.
    svg = str(markup).split("</svg>")[0] + "</svg>"
    return ET.fromstring(svg.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def test_a_bar_chart_has_one_titled_bar_per_point_with_exact_amounts() -> None:
    chart = bar_chart(
        [("05-01", 1_500_000_000), ("05-02", 125), ("05-03", 0)], title="Revenue <per day>"
    )
    svg = parse(chart)
    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "Revenue <per day>"  # type: ignore[union-attr]
    assert "total 1.500000125 USD" in (svg.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]
    bars = svg.findall(f"{SVG}rect")
    assert [b.find(f"{SVG}title").text for b in bars] == [  # type: ignore[union-attr]
        "05-01: 1.50 USD",
        "05-02: 0.000000125 USD",
        "05-03: 0.00 USD",
    ]
    heights = [float(b.get("height") or 0) for b in bars]
    assert heights[0] > heights[1] >= heights[2] == 0
    assert "&lt;per day&gt;" in chart


def test_a_stacked_chart_stacks_each_series_and_names_them_in_a_legend() -> None:
    chart = stacked_bar_chart(
        [("d1", {"gpt": 3 * 10**9, "claude": 10**9}), ("d2", {"claude": 2 * 10**9})],
        title="Spend by model",
    )
    bars = parse(chart).findall(f"{SVG}rect")
    assert [b.get("class") for b in bars] == ["bar bar-0", "bar bar-1", "bar bar-1"]
    # d1's claude part sits right on top of its gpt part.
    gpt, claude = bars[0], bars[1]
    assert float(claude.get("y") or 0) + float(claude.get("height") or 0) == float(
        gpt.get("y") or 0
    )
    assert '<ul class="legend">' in chart
    assert "claude" in chart.split('<ul class="legend">')[1]


def test_an_empty_chart_still_renders() -> None:
    assert parse(bar_chart([], title="Nothing yet")).findall(f"{SVG}rect") == []


def test_templates_escape_what_they_show() -> None:
    html = ENV.from_string("<p>{{ name }}</p>").render(name="<script>x</script>")
    assert html == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert usd(-125) == "-$0.000000125"
    assert usd(10**9) == "$1.00"


def test_the_stylesheet_is_served_and_applied_by_chromium(gw: RunningGateway, page: Page) -> None:
    r = gw.admin.get("/static/site.css")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/css")
    page.set_content(
        f'<html><head><link rel="stylesheet" href="{gw.base_url}/static/site.css"></head>'
        '<body><main id="m">x</main></body></html>'
    )
    page.wait_for_load_state("load")
    assert page.eval_on_selector("#m", "e => getComputedStyle(e).maxWidth") == "1152px"
