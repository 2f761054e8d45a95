"""The question page of the reports site (reports/pages/ask.md), opened in headless Chromium from the
site the session's main job built: a person types a question and sees the answer, the query that ran
and a chart, drawn from the metrics server's `POST /cubejs-api/v1/question`, called by the browser
with the token the person pasted (the site itself holds no token)."""

from __future__ import annotations

import json

from reports import browser
from tests.semantic.test_questions import answer


def _ask(page, question: str, status: str) -> str:
    page.fill("input[name=question]", question)
    page.click("button.question-ask")
    page.wait_for_selector(f".question-answer[data-status={status}]", timeout=30000)
    return page.inner_text(".question-answer")


def test_a_person_asks_and_sees_the_answer_its_query_and_a_chart(main_run, server, chromium):
    data_dir, _ = main_run
    with browser.serving(data_dir / "reports" / "site") as base, browser.opened(chromium, f"{base}/ask") as opened:
        page = opened.page
        page.click("summary")  # Connection: the server's URL and the reader's token, kept in the browser
        page.fill("input[name=api-url]", server.url)
        page.fill("input[name=token]", server.token("t001"))
        text = _ask(page, "daily revenue in the past two weeks", "answered")
        expected = answer(server, "daily revenue in the past two weeks")
        assert expected["sentence"] in text and "tenant t001" in text
        assert json.loads(page.inner_text(".question-query")) == expected["query"]
        page.wait_for_selector(".question-answer canvas", timeout=30000)  # the chart, drawn by ECharts
        assert page.locator(".question-rows tbody tr").count() == len(expected["data"])

        text = _ask(page, "profit by kategory last month", "clarify")
        assert "kategory" in text and "Closest metrics" in text
        text = _ask(page, "revenue for t002", "refused")
        assert "tenant t001 only" in text
        # the URL and token survive a reload (localStorage), and nothing failed in the console
        page.reload()
        page.wait_for_function("() => document.querySelector('input[name=token]').value.length > 0")
        assert not opened.errors, opened.errors
