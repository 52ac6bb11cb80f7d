"""What a teacher hit in headless Chromium that only a browser shows: the swap-caption box through an
input error, Compare's per-run chart keeping its room beside a long legend, a glossary link from a page."""
from __future__ import annotations

from test_browser import (  # noqa: F401  (fixtures used by name)
    browser,
    browser_runs,
    main_errors,
    no_exception,
    open_page,
    server,
    settle,
)

from app_fixtures import REPO


def main_textbox(page, label: str):
    return page.locator("[data-testid='stMain']").get_by_role("textbox", name=label, exact=True)


def commit(box, text: str) -> None:
    box.fill(text)
    box.press("Enter")


def test_the_swap_caption_box_survives_an_input_error_and_its_fix(server, browser):  # noqa: F811
    """Type a swapped caption, make the target an error (the page stops above the box), fix it: the box comes
    back with what was typed, and the next edit of the tweet still uses it."""
    page = open_page(browser, f"{server['url']}/Inspector?run=cap_cmcs", "Counterfactual edits")
    swapped = "a green picture with a white circle"
    commit(main_textbox(page, "Swap the caption"), swapped)
    settle(page, "Swapped caption")
    commit(main_textbox(page, "Target (a phrase that occurs in the tweet)"), "Samsung")
    settle(page, "does not occur in the tweet")
    commit(main_textbox(page, "Target (a phrase that occurs in the tweet)"), "Apple")
    settle(page, "Counterfactual edits")
    assert main_textbox(page, "Swap the caption").input_value() == swapped
    tweet = page.locator("[data-testid='stMain'] textarea").first
    tweet.fill("The new phone from Apple is great, but the battery is awful today")
    page.keyboard.press("Control+Enter")
    settle(page, "Counterfactual edits")
    no_exception(page, "Inspector after the fix")
    assert main_textbox(page, "Swap the caption").input_value() == swapped
    assert not main_errors(page), main_errors(page)
    assert f"Swapped caption: {swapped}" in page.inner_text("body")
    page.close()


def test_compares_per_run_chart_keeps_its_room_beside_a_long_legend(server, browser):  # noqa: F811
    """The committed results hold dozens of regimes: one legend line each, below the plot, never taken from it."""
    page = open_page(browser, f"{server['url']}/Compare?runs={REPO / 'results'}", "Table 1")
    chart = page.locator(".st-key-acc_points .js-plotly-plot").first
    chart.wait_for(timeout=60_000)
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)  # plotly lays the ticks and the legend out after the element appears
    methods = len(chart.locator(".yaxislayer-above .ytick").all())
    plot = chart.locator(".nsewdrag").first.bounding_box()
    assert methods >= 5 and plot["height"] >= 25 * methods, (methods, plot)
    legend = chart.locator(".legend").first.bounding_box()
    assert legend["y"] >= plot["y"] + plot["height"]  # below the plot, not over it
    page.close()


def test_a_glossary_link_opens_its_entry(server, browser):  # noqa: F811
    page = open_page(browser, f"{server['url']}/Robustness?run=cap_cmcs", "Flipped examples")
    link = page.locator("[data-testid='stMain'] a[href*='Glossary#flip-rate']").first
    link.wait_for(timeout=30_000)
    with page.context.expect_page() as opened:  # a new tab: the page being read keeps its place
        link.click()
    entry = opened.value
    settle(entry, "The words the pages use")
    no_exception(entry, "Glossary")
    assert entry.get_by_role("heading", name="Flip rate").first.is_visible()
    entry.close()
    page.close()
