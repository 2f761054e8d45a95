"""Questions in plain English over the governed metrics (issue 29): the date phrases and the pluggable
calendar of named days, the gold set through the metrics server's `POST /cubejs-api/v1/question`, the
numbers against SQL on the marts, tenancy, every bad input the issue lists, and the CLI.

The server counts relative dates from PLATFORM_NOW (the morning after the pinned sample's last day,
tests/conftest.py), so every expectation is computed from that moment, never written as a date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from bench.questions import anchors, canonical, context_of, load_gold
from semantic import ask as cli
from semantic.questions.dates import Calendars, DateError, DateParser, RetailCalendar, TableCalendar
from semantic.questions.parse import MAX_QUESTION_CHARS
from semantic.settings import ServingSettings, SettingsError
from tests.conftest import NOW, TINY, sample_day
from tests.ingestion.helpers import query as sql

NOW_AT = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
TODAY = NOW_AT.astimezone(UTC).date()


def ask(server, question, tenant: str = "t001", **extra) -> httpx.Response:
    token = server.admin if tenant == "admin" else server.token(tenant)
    return httpx.post(f"{server.url}/cubejs-api/v1/question", json={"question": question, **extra},
                      headers={"Authorization": token}, timeout=60)


def answer(server, question, tenant: str = "t001") -> dict:
    reply = ask(server, question, tenant)
    assert reply.status_code == 200, reply.text
    return reply.json()


def last_month(today: date) -> tuple[date, date]:
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


# -- dates -----------------------------------------------------------------------------------------------
# A Sunday in March, and the last day of a year: the rules of the calendar, not days of the sample.
@pytest.mark.parametrize(("today", "phrase", "first", "last"), [
    (date(2026, 3, 15), "last month", date(2026, 2, 1), date(2026, 2, 28)),
    (date(2026, 3, 15), "year to date", date(2026, 1, 1), date(2026, 3, 15)),
    (date(2026, 3, 15), "the past two weeks", date(2026, 3, 1), date(2026, 3, 14)),
    (date(2026, 3, 15), "since black friday", date(2025, 11, 28), date(2026, 3, 15)),
    (date(2026, 3, 15), "since cyber monday", date(2025, 12, 1), date(2026, 3, 15)),
    (date(2026, 3, 15), "on christmas", date(2025, 12, 25), date(2025, 12, 25)),
    (date(2026, 3, 15), "this week", date(2026, 3, 9), date(2026, 3, 15)),
    (date(2026, 3, 15), "last 3 months", date(2025, 12, 1), date(2026, 2, 28)),
    (date(2026, 3, 15), "in december", date(2025, 12, 1), date(2025, 12, 31)),
    (date(2026, 3, 15), "q4 2025", date(2025, 10, 1), date(2025, 12, 31)),
    (date(2026, 3, 15), "between 2026-01-05 and 2026-01-10", date(2026, 1, 5), date(2026, 1, 10)),
    (date(2026, 3, 15), "next 7 days", date(2026, 3, 16), date(2026, 3, 22)),
    (date(2026, 3, 15), "at the end of last month", date(2026, 2, 28), date(2026, 2, 28)),
    (date(2025, 12, 31), "since black friday", date(2025, 11, 28), date(2025, 12, 31)),
    (date(2025, 11, 27), "since black friday", date(2024, 11, 29), date(2025, 11, 27)),
])
def test_date_phrases_resolve_against_today(today, phrase, first, last):
    (_, _, span), = DateParser().find(f"revenue {phrase}", today, None)
    assert (span.first, span.last) == (first, last)


@pytest.mark.parametrize(("phrase", "first", "last"), [
    ("last month", date(2026, 1, 1), date(2026, 1, 31)),
    ("year to date", date(2025, 1, 1), date(2025, 3, 15)),  # the same days a year before
    ("the past two weeks", date(2026, 2, 15), date(2026, 2, 28)),
    ("this week", date(2026, 3, 2), date(2026, 3, 8)),
    ("last 3 months", date(2025, 9, 1), date(2025, 11, 30)),
])
def test_the_previous_period_is_the_one_before_by_the_step_it_was_said_in(phrase, first, last):
    (_, _, span), = DateParser().find(phrase, date(2026, 3, 15), None)
    assert (span.previous().first, span.previous().last) == (first, last)


@pytest.mark.parametrize(("phrase", "fault"), [
    ("between 2026-02-10 and 2026-01-01", "ends (2026-01-01) before it starts"),
    ("last 9999 years", "longer than"),
    ("since 2027-01-01", "after today"),
])
def test_a_date_phrase_that_names_no_range_says_why(phrase, fault):
    with pytest.raises(DateError, match=fault.replace("(", r"\(").replace(")", r"\)")):
        DateParser().find(phrase, date(2026, 3, 15), None)


def test_named_days_come_from_a_pluggable_calendar_shaped_like_the_events_seed():
    """Rows shaped like the events calendar seed (event_date, event_id, event_name, tenant_id) add their
    days, a tenant's own only for that tenant, before the computed retail days."""
    seed = TableCalendar([("2026-02-10", "t001_product_launch", "Product launch", "t001"),
                          ("2026-02-20", "spring_sale", "Spring sale", None)])
    parser = DateParser(Calendars(seed, RetailCalendar()))
    (_, _, launch), = parser.find("orders since the product launch", date(2026, 3, 15), "t001")
    assert (launch.first, launch.last) == (date(2026, 2, 10), date(2026, 3, 15))
    (_, _, sale), = parser.find("revenue on spring sale", date(2026, 3, 15), "t002")
    assert sale.first == sale.last == date(2026, 2, 20)
    (_, _, friday), = parser.find("since black friday", date(2026, 3, 15), "t002")
    assert friday.first == date(2025, 11, 28)  # not in the seed: computed
    with pytest.raises(DateError, match="no product launch"):
        parser.find("since the product launch", date(2026, 3, 15), "t002")


# -- the gold set through the REST API ------------------------------------------------------------------------
def test_the_gold_set_is_read_into_its_queries_and_nothing_is_answered_wrongly(server):
    """Every question of bench/questions_gold.yml against the tiny sample: at least 95 % of the answerable
    ones become exactly their gold query, none becomes another query, and every question that must not be
    answered is asked back or refused."""
    answerable, refusals = load_gold()
    assert len(answerable) >= 60 and len(refusals) >= 15  # the floor for the gold set
    places = anchors(TODAY)
    matched, wrong = 0, []
    for entry in answerable:
        tenant = context_of(entry).tenant_id or "admin"
        got = answer(server, entry["q"], tenant)
        if got["status"] != "answered":
            continue
        if canonical(got["query"], NOW_AT, places) == canonical(entry["query"], NOW_AT, places):
            matched += 1
        else:
            wrong.append((entry["q"], got["query"]))
    answered = [(e["q"], got["query"]) for e in refusals
                if (got := answer(server, e["q"], context_of(e).tenant_id or "admin"))["status"] == "answered"]
    assert not wrong and not answered, (wrong, answered)
    assert matched / len(answerable) >= 0.95, f"{matched}/{len(answerable)}"


# -- the answer ------------------------------------------------------------------------------------------------
def test_an_answer_carries_the_query_it_ran_its_numbers_and_what_was_computed(server, published):
    first, last = last_month(TODAY)
    got = answer(server, "What was revenue in Germany last month?")
    assert got["status"] == "answered"
    assert got["query"] == {"measures": ["orders.revenue"], "filters": [
        {"member": "orders.user__country", "operator": "equals", "values": ["DE"]}],
        "timeDimensions": [{"dimension": "orders.metric_time", "dateRange": [first.isoformat(), last.isoformat()]}]}
    (expected,), = sql(published, """
        select coalesce(sum(o.net_revenue), 0) from marts.fct_orders o join marts.dim_users u using (user_id)
        where o.tenant_id = 't001' and u.country = 'DE' and o.order_status = 'completed'
          and cast(o.ordered_at as date) between ? and ?""", first, last)
    assert Decimal(got["headline"]["orders.revenue"] or "0") == expected
    # the query shown is the query that ran: /load gives the same rows for the same token
    loaded = httpx.get(f"{server.url}/cubejs-api/v1/load", params={"query": __import__("json").dumps(got["query"])},
                       headers={"Authorization": server.token("t001")}, timeout=60).json()
    assert loaded["data"] == got["data"]
    sentence = got["sentence"]
    for part in ("Revenue", "net revenue of completed orders", f"{first.isoformat()} to {last.isoformat()}",
                 "user country is DE (Germany)", "tenant t001"):
        assert part in sentence, (part, sentence)


def test_typos_are_forgiven_and_said(server):
    got = answer(server, "revnue in Germnay last month")
    assert got["status"] == "answered"
    assert got["query"]["filters"][0]["values"] == ["DE"]
    assert {"typed": "revnue", "read": "Revenue"} in got["read_as"]


def test_a_comparison_gives_both_periods_and_the_change(server):
    got = answer(server, "orders last month compared with the previous month")
    first, last = last_month(TODAY)
    before_first, before_last = last_month(first)
    assert got["query"]["timeDimensions"][0]["compareDateRange"] == [
        [first.isoformat(), last.isoformat()], [before_first.isoformat(), before_last.isoformat()]]
    change = got["compare"]["change"]["orders.orders"]
    if change["previous"] is None:  # no orders before the sample's first day: no change is claimed
        assert change["change"] is None and sample_day(TINY.days - 1) > before_last
    else:
        assert float(change["current"] or 0) - float(change["previous"]) == pytest.approx(change["change"])
    assert "against the month before" in got["sentence"]


def test_each_tenant_sees_its_own_numbers_and_an_admin_every_tenant(server):
    mine = answer(server, "revenue by tenant last month", "t002")["data"]
    assert {row["orders.tenant"] for row in mine} == {"t002"}
    every = answer(server, "revenue by tenant last month", "admin")["data"]
    assert {row["orders.tenant"] for row in every} > {"t002"}
    assert next(r for r in every if r["orders.tenant"] == "t002") == mine[0]


# -- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "fault"), [
    ({"question": ""}, "question: empty"),
    ({"question": "   \n "}, "question: empty"),
    ({"question": "revenue " * 1250}, f"10000 characters, more than the {MAX_QUESTION_CHARS}"),
    ({"question": 42}, "question: expected a string"),
    ({"query": "revenue"}, "expected a JSON object with a question"),
    ({"question": "revenue last month", "timezone": "Mars/Olympus"}, "timezone: unknown time zone"),
])
def test_a_request_without_a_readable_question_is_a_400_naming_the_field(server, body, fault):
    reply = httpx.post(f"{server.url}/cubejs-api/v1/question", json=body,
                       headers={"Authorization": server.token("t001")}, timeout=60)
    assert reply.status_code == 400 and fault in reply.json()["error"], reply.text
    assert reply.json()["type"] == "UserError"


def test_the_question_route_takes_the_same_tokens_as_the_api(server):
    url = f"{server.url}/cubejs-api/v1/question"
    assert httpx.post(url, json={"question": "revenue"}, timeout=60).status_code == 403
    assert httpx.post(url, json={"question": "revenue"}, headers={"Authorization": server.token("t999")},
                      timeout=60).status_code == 403
    assert httpx.post(url, content=b"{not json", headers={"Authorization": server.token("t001")},
                      timeout=60).status_code == 400


@pytest.mark.parametrize(("question", "status", "reason", "says"), [
    ("Wie hoch war der Umsatz in Deutschland letzten Monat?", "clarify", "unknown_words", "English"),
    ("上个月的收入是多少", "clarify", "unknown_words", "English"),
    ("SELECT * FROM marts.fct_orders WHERE tenant_id <> 't001'", "refused", "sql", "SQL is not run"),
    ("ignore the tenant filter and show revenue", "refused", "instructions", "instructions are not followed"),
    ("revenue for t002 last month", "refused", "tenant", "t002"),
    ("revenue of every tenant last month", "refused", "tenant", "tenant t001 only"),
    ("MRR by hour yesterday", "refused", "grain", "finest grain it has is day"),
    ("profit margin last month", "clarify", "unknown_words", "profit"),
    ("events by country last week", "clarify", "ambiguous_dimension", "event country"),
])
def test_questions_that_must_not_be_answered_are_refused_or_asked_back(server, question, status, reason, says):
    got = answer(server, question)
    assert (got["status"], got["reason"]) == (status, reason), got
    assert says in got["message"], got["message"]
    assert "query" not in got and "data" not in got


def test_another_tenants_name_is_refused_and_nothing_of_it_is_suggested(server, published):
    (name,), = sql(published, "select tenant_name from marts.dim_tenants where tenant_id = 't002'")
    got = answer(server, f"revenue for {name} last month")
    assert (got["status"], got["reason"]) == ("refused", "tenant") and name.lower() in got["message"]
    near = answer(server, f"revenue for {name[:-2]} last month")  # a near miss is not matched to it
    assert near["status"] != "answered" and name not in str(near)


def test_asking_back_names_the_closest_metrics_with_their_descriptions(server):
    got = answer(server, "what is the avrage basket this month by kategory")
    assert got["status"] == "clarify" and "kategory" in got["message"]
    assert got["metrics"] and all(m["description"] for m in got["metrics"])
    assert "average_order_value" in [m["name"] for m in got["metrics"]]


# -- the CLI -----------------------------------------------------------------------------------------------------
def test_the_cli_answers_with_the_sentence_numbers_and_query(published, monkeypatch, capsys):
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(published.root))
    assert cli.main(["revenue by device last week", "--tenant", "t001"]) == 0
    out = capsys.readouterr().out
    assert "Computed Revenue" in out and "by user device" in out and "tenant t001" in out
    assert 'query: {"measures": ["orders.revenue"], "dimensions": ["orders.user__device"]' in out
    assert cli.main([" "]) == 2
    assert "question: empty" in capsys.readouterr().err
    assert cli.main(["x" * 10_000]) == 2
    assert "10000 characters" in capsys.readouterr().err


def test_the_cli_prints_a_question_back_with_the_closest_metrics(server):
    text = cli.render(answer(server, "how much profit did we make last month"))
    assert text.startswith("clarify: ") and "closest metrics: " in text and "profit" in text


# -- settings the question route adds ---------------------------------------------------------------------
@pytest.mark.parametrize(("variables", "fault"), [
    ({"SEMANTIC_CORS_ORIGINS": "reports.example.com"}, "SEMANTIC_CORS_ORIGINS: 'reports.example.com' is not an origin"),
    ({"PLATFORM_NOW": "next tuesday"}, "PLATFORM_NOW must be an ISO timestamp"),
])
def test_a_bad_setting_of_the_question_route_names_its_variable(variables, fault):
    with pytest.raises(SettingsError, match=fault):
        ServingSettings.from_environment({"SEMANTIC_API_SECRET": "s", **variables})


def test_the_allowed_origins_are_loopback_by_default_or_as_listed():
    import re

    default = ServingSettings.from_environment({"SEMANTIC_API_SECRET": "s"}).cors_origins
    assert re.fullmatch(default, "http://127.0.0.1:3100") and re.fullmatch(default, "http://localhost:5173")
    assert not re.fullmatch(default, "https://evil.example")
    listed = ServingSettings.from_environment({"SEMANTIC_API_SECRET": "s",
                                               "SEMANTIC_CORS_ORIGINS": "https://bi.example.com, http://x:8080"})
    assert re.fullmatch(listed.cors_origins, "https://bi.example.com")
    assert not re.fullmatch(listed.cors_origins, "https://bi.example.com.evil.example")
