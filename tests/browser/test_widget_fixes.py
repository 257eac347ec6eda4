"""Widget fixes found in a headless-browser check (issue 21): the typing indicator's
contrast, the panel's margins on a 390 px screen, one bubble per message live as after
a reload (the answer with its "Source:" line, which links to the page's help page)."""
from __future__ import annotations

import pytest

from tests.browser.test_widget import BOT, bot_texts, open_chat, send, wait_bot_count


def _luminance(rgb):
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _rgb(css):
    return tuple(int(float(v)) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])


def test_typing_indicator_is_readable(web_stack, page):
    page.goto(web_stack.page_url)
    page.get_by_role("button", name="Open chat with Lakeside Bank").click()
    page.evaluate("LakesideChat.instance.showTyping(true)")
    typing = page.locator(".lsc-typing")
    typing.wait_for(state="visible")
    assert typing.inner_text().strip() == "Lakeside Bank is typing…"
    colours = page.evaluate("""() => {
        const t = document.querySelector('.lsc-typing');
        return [getComputedStyle(t.querySelector('.lsc-dot')).backgroundColor, getComputedStyle(t).color,
                getComputedStyle(t).backgroundColor];
    }""")
    background = _luminance(_rgb(colours[2]))
    for colour in colours[:2]:
        contrast = (max(background, _luminance(_rgb(colour))) + 0.05) / (min(background, _luminance(_rgb(colour))) + 0.05)
        assert contrast >= 4.5, (colour, contrast)


@pytest.mark.parametrize("width", [390])
def test_panel_margins_on_a_phone(web_stack, page, width):
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(web_stack.page_url)
    page.get_by_role("button", name="Open chat with Lakeside Bank").click()
    box = page.locator(".lsc-panel").bounding_box()
    left, right = box["x"], width - (box["x"] + box["width"])
    assert left == right and left >= 8, (left, right)


def test_answer_and_source_are_one_bubble_live_and_after_reload(web_stack, page):
    open_chat(page, web_stack.page_url)
    send(page, "my card still hasn't arrived")
    wait_bot_count(page, 2)
    page.wait_for_timeout(1500)  # a split message would have arrived by now
    live = bot_texts(page)
    page.evaluate("localStorage.removeItem('lakeside-chat:messages')")
    page.reload()
    page.locator(BOT).nth(1).wait_for()
    assert bot_texts(page) == live and len(live) == 2
    assert "Source:" in live[1]
    # the "Source:" line links to the cited page's help page (the demo page serves them)
    link = page.locator(f"{BOT} .lsc-source a").last
    assert link.get_attribute("href") == "/help/card-delivery"
    help_page = page.context.request.get(web_stack.page_url + link.get_attribute("href"))
    assert help_page.ok and link.inner_text() in help_page.text()
