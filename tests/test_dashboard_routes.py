"""The dashboard's pages without a browser: sign-in, CSRF, escaping, the actions each status
offers, refusals with their reason, the list's filters, the editor (CSV upload, invalid rows,
preview, test-send) and the report. Temporal must not be needed for any of this."""

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api_helpers import (
    ACCOUNT,
    API_KEY,
    api_client,
    make_settings,
    move_to,
    seed,
    seed_audience,
    seed_messages,
    served,
)
from tests.dashboard_helpers import action_ids, csrf_token, post_form, sign_in
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.models import ActorKind, CampaignDraft, Sender, TimelineEntry
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.domain.transitions import CampaignAction, allowed_actions
from whatsapp_campaigns.store import accounts, campaigns, catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_SENDER

S = CampaignStatus
EVIL = "<script>alert('x')</script>"


def make_campaign(db: Database, name: str = "Spring sale", *, audience: bool = True) -> str:
    draft = CampaignDraft(
        name=name,
        template_name="order_update",
        sender_phone_number_id=SANDBOX_SENDER.phone_number_id,
        audience_id=seed_audience(db) if audience else None,
    )
    return campaigns.create_draft(db, ACCOUNT, draft).id


@pytest.fixture
async def dashboard(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """Signed in to a dashboard whose API needs a key."""
    seed(db)
    settings = make_settings(db, CAMPAIGNS_API_KEYS=API_KEY)
    async with api_client(db, settings) as client:
        page = await sign_in(client, API_KEY, user="Ana")
        assert page.status_code == 200
        yield client


# --------------------------------------------------------------------------------- auth


async def test_pages_need_a_session_and_the_login_takes_only_a_known_key(db: Database) -> None:
    seed(db)
    settings = make_settings(db, CAMPAIGNS_API_KEYS=API_KEY)
    async with api_client(db, settings) as client:
        page = await client.get("/dashboard/campaigns/new?x=1")
        assert page.status_code == 303
        login = "/dashboard/login?next=%2Fdashboard%2Fcampaigns%2Fnew%3Fx%3D1"
        assert page.headers["location"] == login
        assert (await client.get("/dashboard/campaigns/abc/live")).status_code == 303
        fetched = await client.get("/dashboard/", headers={"X-Requested-With": "fetch"})
        assert fetched.status_code == 401
        assert (await client.get("/dashboard/campaigns/abc/report.csv")).status_code == 303

        wrong = await client.post("/dashboard/login", data={"api_key": "nope"})
        assert wrong.status_code == 401 and "Unknown or revoked API key" in wrong.text
        assert "campaigns_session" not in client.cookies

        ok = await client.post(
            "/dashboard/login", data={"api_key": API_KEY, "next": "https://evil.example/"}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard/"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/dashboard" in cookie
        assert API_KEY not in ok.headers["set-cookie"]
        assert (await client.get("/dashboard/")).status_code == 200


async def test_a_forged_session_or_one_whose_key_was_removed_is_refused(db: Database) -> None:
    seed(db)
    async with api_client(db, make_settings(db, CAMPAIGNS_API_KEYS=API_KEY)) as client:
        await sign_in(client, API_KEY)
        cookie = client.cookies["campaigns_session"]
    body, _, mac = cookie.rpartition(".")
    async with api_client(db, make_settings(db, CAMPAIGNS_API_KEYS=API_KEY)) as other:
        # Another process has another random secret: the old cookie is worthless there.
        other.cookies.set("campaigns_session", cookie, path="/dashboard")
        assert (await other.get("/dashboard/")).status_code == 303
        other.cookies.set("campaigns_session", f"{body}.{'0' * len(mac)}", path="/dashboard")
        assert (await other.get("/dashboard/")).status_code == 303
    settings = make_settings(
        db, CAMPAIGNS_API_KEYS="old-key", CAMPAIGNS_DASHBOARD_SECRET="fixed-secret"
    )
    async with api_client(db, settings) as client:
        await sign_in(client, "old-key")
        cookie = client.cookies["campaigns_session"]
    rotated = make_settings(
        db, CAMPAIGNS_API_KEYS="new-key", CAMPAIGNS_DASHBOARD_SECRET="fixed-secret"
    )
    async with api_client(db, rotated) as client:
        client.cookies.set("campaigns_session", cookie, path="/dashboard")
        assert (await client.get("/dashboard/")).status_code == 303


async def test_an_open_api_opens_the_dashboard_without_a_key(db: Database) -> None:
    seed(db)
    async with api_client(db) as client:
        page = await sign_in(client)
        assert page.status_code == 200 and "Campaigns" in page.text
        assert "Sign out" not in page.text


async def test_posts_need_the_session_csrf_token_and_the_same_origin(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db)
    url = f"/dashboard/campaigns/{campaign_id}/actions/delete"
    missing = await dashboard.post(url, data={})
    assert missing.status_code == 403
    wrong = await dashboard.post(url, data={"csrf_token": "0" * 40})
    assert wrong.status_code == 403
    token = csrf_token((await dashboard.get(f"/dashboard/campaigns/{campaign_id}")).text)
    cross = await dashboard.post(
        url, data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert campaigns.get_campaign(db, campaign_id).status is S.DRAFT
    same = await dashboard.post(url, data={"csrf_token": token}, headers={"Origin": "http://api"})
    assert same.status_code == 303 and same.headers["location"] == "/dashboard/"


# ----------------------------------------------------------------------------- escaping


async def test_user_text_is_escaped_everywhere_and_scripts_only_come_from_static(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db, EVIL)
    campaigns.record_timeline(
        db,
        campaign_id,
        TimelineEntry(
            at=datetime.now(UTC),
            action="pause",
            actor=ActorKind.USER,
            by=EVIL,
            reason=EVIL,
            refused=True,
        ),
    )
    for url in (
        "/dashboard/",
        f"/dashboard/?q={EVIL}",
        f"/dashboard/campaigns/{campaign_id}",
        f"/dashboard/campaigns/{campaign_id}/live",
        f"/dashboard/campaigns/{campaign_id}/edit",
    ):
        page = await dashboard.get(url)
        assert page.status_code == 200, url
        assert EVIL not in page.text, url
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text, url
        assert "script-src 'self'" in page.headers["content-security-policy"]
    page = await dashboard.get(f"/dashboard/campaigns/{campaign_id}")
    assert re.findall(r"<script[^>]*>", page.text) == [
        '<script src="/dashboard/static/dashboard.js" defer>'
    ]
    static = await dashboard.get("/dashboard/static/dashboard.js")
    assert static.status_code == 200 and "data-confirm" in static.text


# ---------------------------------------------------------------------- actions offered


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), {"edit", "launch", "test_send", "duplicate", "delete", "schedule"}),
        ((S.SCHEDULED, S.QUEUED, S.SENDING), {"pause", "cancel", "duplicate", "report"}),
        ((S.SCHEDULED, S.QUEUED, S.SENDING, S.PAUSED), {"resume", "cancel", "duplicate", "report"}),
        ((S.SCHEDULED, S.QUEUED, S.SENDING, S.COMPLETED), {"report", "retry_failed", "duplicate"}),
        ((S.SCHEDULED, S.CANCELLED), {"report", "duplicate"}),
    ],
)
async def test_the_page_offers_exactly_the_allowed_actions(
    db: Database,
    dashboard: httpx.AsyncClient,
    path: tuple[CampaignStatus, ...],
    expected: set[str],
) -> None:
    campaign_id = make_campaign(db)
    move_to(db, campaign_id, *path)
    campaign = campaigns.get_campaign(db, campaign_id)
    allowed = {a.value for a in allowed_actions(campaign.status, campaign.policy)}
    allowed -= {CampaignAction.SET_AUDIENCE.value}  # part of the editor, not a button
    assert allowed == expected
    page = await dashboard.get(f"/dashboard/campaigns/{campaign_id}")
    assert action_ids(page.text) == expected
    assert ("temporal-link" in page.text) is bool(path)


async def test_a_scheduled_campaign_explains_the_cancel_cut_off(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    later = make_campaign(db, "later")
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    campaigns.set_schedule(db, later, send_at, "Europe/Paris")
    move_to(db, later, S.SCHEDULED)
    page = await dashboard.get(f"/dashboard/campaigns/{later}")
    assert "cancel" in action_ids(page.text)
    paris = send_at.astimezone(ZoneInfo("Europe/Paris"))  # the reschedule form starts there
    assert f'id="reschedule-time" value="{paris:%H:%M:%S}"' in page.text
    assert f'id="reschedule-date" value="{paris:%Y-%m-%d}"' in page.text
    assert "cancellation closes 5 minutes before the send time" in page.text
    assert "CET" in page.text or "CEST" in page.text  # shown in the campaign's timezone

    soon = make_campaign(db, "soon")
    campaigns.set_schedule(db, soon, datetime.now(UTC) + timedelta(minutes=2), "UTC")
    move_to(db, soon, S.SCHEDULED)
    page = await dashboard.get(f"/dashboard/campaigns/{soon}")
    assert "cancel" not in action_ids(page.text)
    assert "Cancel is not available: cancellation closed at" in page.text


async def test_a_refused_action_shows_the_reason(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db)
    page_url = f"/dashboard/campaigns/{campaign_id}"
    refused = await post_form(dashboard, page_url, f"{page_url}/actions/pause")
    assert refused.status_code == 409
    assert "Pause refused: cannot pause: the campaign is draft and has not started" in refused.text

    soon = make_campaign(db, "soon")
    campaigns.set_schedule(db, soon, datetime.now(UTC) + timedelta(minutes=2), "UTC")
    move_to(db, soon, S.SCHEDULED)
    soon_url = f"/dashboard/campaigns/{soon}"
    cancel = await post_form(dashboard, soon_url, f"{soon_url}/actions/cancel")
    assert cancel.status_code == 409 and "cancellation closed at" in cancel.text

    past = await post_form(
        dashboard,
        page_url,
        f"{page_url}/actions/schedule",
        {"send_date": "2001-01-01", "send_time": "09:00", "timezone": "UTC"},
    )
    assert past.status_code == 409 and "has passed" in past.text
    bad_zone = await post_form(
        dashboard,
        page_url,
        f"{page_url}/actions/schedule",
        {"send_date": "2099-01-01", "send_time": "09:00", "timezone": "Mars/Olympus"},
    )
    assert bad_zone.status_code == 422 and "unknown timezone" in bad_zone.text


async def test_scheduling_refuses_with_every_preflight_problem(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db, audience=False)
    page_url = f"/dashboard/campaigns/{campaign_id}"
    answer = await post_form(dashboard, page_url, f"{page_url}/actions/launch")
    assert answer.status_code == 409
    assert "Send now refused: cannot schedule:" in answer.text


async def test_another_accounts_campaign_is_not_found(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    accounts.ensure_account(db, "other")
    catalog.upsert_sender(
        db, Sender(phone_number_id="other-1", account_id="other", display_number="+12025550170")
    )
    foreign = campaigns.create_draft(
        db,
        "other",
        CampaignDraft(name="theirs", template_name="x", sender_phone_number_id="other-1"),
    )
    page = await dashboard.get(f"/dashboard/campaigns/{foreign.id}")
    assert page.status_code == 404 and "theirs" not in page.text
    assert "theirs" not in (await dashboard.get("/dashboard/")).text


# --------------------------------------------------------------------------------- list


async def test_the_list_filters_searches_sorts_and_pages(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    ids = {name: make_campaign(db, name) for name in ("Alpha", "Bravo", "Charlie")}
    move_to(db, ids["Bravo"], S.SCHEDULED, S.QUEUED, S.SENDING, S.COMPLETED)
    seed_messages(
        db,
        ids["Bravo"],
        [MessageStatus.READ, MessageStatus.DELIVERED, MessageStatus.SENT, MessageStatus.FAILED],
    )

    page = (await dashboard.get("/dashboard/")).text
    assert page.index("Charlie") < page.index("Bravo") < page.index("Alpha")  # newest first
    assert "3 campaigns" in page
    row = re.search(r'data-status="completed">(.*?)</tr>', page, re.S)
    assert row is not None
    assert '<td class="num rate-sent">75.0</td>' in row.group(1)
    assert '<td class="num rate-delivered">50.0</td>' in row.group(1)
    assert '<td class="num rate-failed">25.0</td>' in row.group(1)
    assert f"/dashboard/campaigns/{ids['Bravo']}/report.csv" in row.group(1)

    completed = (await dashboard.get("/dashboard/?status=completed")).text
    assert "Bravo" in completed and "Alpha" not in completed and "1 campaign " in completed
    searched = (await dashboard.get("/dashboard/?q=harl")).text
    assert "Charlie" in searched and "Bravo" not in searched
    by_name = (await dashboard.get("/dashboard/?sort=name&order=asc")).text
    assert by_name.index("Alpha") < by_name.index("Bravo") < by_name.index("Charlie")
    other_sender = (await dashboard.get("/dashboard/?sender=nobody")).text
    assert "No campaign matches these filters." in other_sender
    future = (await dashboard.get("/dashboard/?since=2999-01-01")).text
    assert "0 campaigns" in future
    today = datetime.now(UTC).date().isoformat()
    assert "3 campaigns" in (await dashboard.get(f"/dashboard/?since={today}&until={today}")).text

    for i in range(30):
        make_campaign(db, f"bulk {i:02d}", audience=False)
    first = (await dashboard.get("/dashboard/?per_page=25")).text
    assert "33 campaigns · showing 1\N{EN DASH}25" in first and 'rel="next"' in first
    second = (await dashboard.get("/dashboard/?per_page=25&page=2")).text
    assert "showing 26\N{EN DASH}33" in second and "Alpha" in second
    fragment = (await dashboard.get("/dashboard/?per_page=25&page=2&fragment=1")).text
    assert 'id="campaign-table-inner"' in fragment and "<html" not in fragment


# ------------------------------------------------------------------------------- editor


CSV = (
    "phone,name,order_id\n"
    "+12025550110,Ana,A-1\n"
    "not-a-phone,Bo,A-2\n"
    "+12025550111,Cy,A-3\n"
    "+12025550110,Ana again,A-4\n"
)


def draft_fields(editor_page: str, name: str, **fields: str) -> dict[str, str]:
    """The editor's form for a draft named `name` on the sandbox number, plus `fields`."""
    return {
        "csrf_token": csrf_token(editor_page),
        "name": name,
        "template": "order_update:en",
        "sender": SANDBOX_SENDER.phone_number_id,
        **fields,
    }


async def test_the_editor_creates_a_draft_from_a_csv_and_previews_it(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    new = await dashboard.get("/dashboard/campaigns/new")
    assert new.status_code == 200
    assert "order_update (en) · APPROVED" in new.text
    assert "promo_pending (en) · PENDING" in new.text
    assert '<code title="body">order_id</code>' in new.text  # the template's variables
    answer = await dashboard.post(
        "/dashboard/campaigns/new",
        data=draft_fields(new.text, "Shipping notice", timezone="Europe/Paris"),
        files={"audience_file": ("customers.csv", CSV.encode(), "text/csv")},
    )
    assert answer.status_code == 303, answer.text
    editor_url = answer.headers["location"]
    campaign_id = editor_url.split("/")[3]
    editor = await dashboard.get(editor_url)
    assert "Draft saved. Audience imported: 2 valid, 1 invalid, 1 duplicates" in editor.text
    assert "not-a-phone" in editor.text  # the invalid row, with its row number and reason
    assert re.search(r'<td class="num">3</td><td><code>not-a-phone</code></td>', editor.text)
    assert "Hi Ana, your order A-1 has shipped." in editor.text
    second = await dashboard.get(f"{editor_url}?sample=1")
    assert "Hi Cy, your order A-3 has shipped." in second.text

    campaign = campaigns.get_campaign(db, campaign_id)
    assert campaign.status is S.DRAFT and campaign.timezone == "Europe/Paris"
    timeline = campaigns.get_timeline(db, campaign_id)
    assert timeline[0].by == "Ana"

    sent = await dashboard.post(
        f"/dashboard/campaigns/{campaign_id}/actions/test_send",
        data={"csrf_token": csrf_token(editor.text), "to": "+12025550123", "return_to": "editor"},
    )
    assert sent.status_code == 303 and sent.headers["location"] == editor_url
    assert "Test message sent to +12025550123" in (await dashboard.get(editor_url)).text

    bad = await dashboard.post(
        f"/dashboard/campaigns/{campaign_id}/actions/test_send",
        data={"csrf_token": csrf_token(editor.text), "to": "12", "return_to": "editor"},
    )
    assert bad.status_code == 422 and "Test-send refused" in bad.text


async def test_the_editor_keeps_the_form_and_says_why_it_did_not_save(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    new = await dashboard.get("/dashboard/campaigns/new")
    answer = await dashboard.post(
        "/dashboard/campaigns/new",
        data=draft_fields(new.text, "Kept name"),
        files={"audience_file": ("bad.csv", b"\xff\xfe\x00binary", "text/csv")},
    )
    assert answer.status_code == 422
    assert "Not saved:" in answer.text and 'value="Kept name"' in answer.text
    no_name = await dashboard.post(
        "/dashboard/campaigns/new",
        data={"csrf_token": csrf_token(new.text), "template": "order_update:en", "sender": "x"},
    )
    assert no_name.status_code == 422 and "Not saved: name:" in no_name.text


async def test_the_editor_opens_a_draft_without_an_audience(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db, "No audience yet", audience=False)
    editor = await dashboard.get(f"/dashboard/campaigns/{campaign_id}/edit")
    assert editor.status_code == 200
    assert "Add an audience to preview the message" in editor.text


async def test_the_editor_sets_the_campaigns_share_of_its_number_and_its_partitions(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    new = await dashboard.get("/dashboard/campaigns/new")
    assert 'name="weight"' in new.text and 'name="send_partitions"' in new.text
    answer = await dashboard.post(
        "/dashboard/campaigns/new",
        data=draft_fields(new.text, "Big launch", weight="1.234567", send_partitions="4"),
    )
    assert answer.status_code == 303, answer.text
    campaign_id = answer.headers["location"].split("/")[3]
    policy = campaigns.get_campaign(db, campaign_id).policy
    assert (policy.weight, policy.send_partitions) == (1.234567, 4)
    editor = await dashboard.get(answer.headers["location"])
    assert 'value="1.234567"' in editor.text and 'value="4"' in editor.text


async def test_the_editor_refuses_a_share_or_partitions_out_of_range_and_keeps_the_form(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    new = await dashboard.get("/dashboard/campaigns/new")
    form = draft_fields(new.text, "Too many")
    partitions = await dashboard.post(
        "/dashboard/campaigns/new", data=form | {"send_partitions": "33"}
    )
    assert partitions.status_code == 422
    assert "Not saved: send_partitions:" in partitions.text and 'value="33"' in partitions.text
    weight = await dashboard.post("/dashboard/campaigns/new", data=form | {"weight": "lots"})
    assert weight.status_code == 422 and "Not saved: weight:" in weight.text
    assert campaigns.list_campaigns(db, ACCOUNT, search="Too many")[1] == 0  # nothing saved


async def test_a_running_campaign_cannot_be_edited(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db)
    move_to(db, campaign_id, S.SCHEDULED, S.QUEUED, S.SENDING)
    answer = await dashboard.get(f"/dashboard/campaigns/{campaign_id}/edit")
    assert answer.status_code == 303
    page = await dashboard.get(answer.headers["location"])
    assert "its content is locked" in page.text


async def test_duplicate_opens_the_copy_in_the_editor(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db, "Original")
    page_url = f"/dashboard/campaigns/{campaign_id}"
    answer = await post_form(dashboard, page_url, f"{page_url}/actions/duplicate")
    assert answer.status_code == 303 and answer.headers["location"].endswith("/edit")
    editor = await dashboard.get(answer.headers["location"])
    assert "Duplicated into a new draft" in editor.text


# ------------------------------------------------------------------------------- report


async def test_the_report_page_and_csv_use_the_session(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db)
    move_to(db, campaign_id, S.SCHEDULED, S.QUEUED, S.SENDING, S.COMPLETED)
    seed_messages(db, campaign_id, [MessageStatus.READ, MessageStatus.INVALID_CONTACT])
    report = await dashboard.get(f"/dashboard/campaigns/{campaign_id}/report")
    assert report.status_code == 200
    assert "+12025550200" in report.text and "invalid contact" in report.text
    only_read = await dashboard.get(f"/dashboard/campaigns/{campaign_id}/report?status=read")
    assert "+12025550200" in only_read.text and "+12025550201" not in only_read.text
    csv_file = await dashboard.get(f"/dashboard/campaigns/{campaign_id}/report.csv")
    assert csv_file.status_code == 200
    assert csv_file.headers["content-type"].startswith("text/csv")
    assert csv_file.text.splitlines()[0].startswith("message_id,phone_e164,status")
    assert len(csv_file.text.splitlines()) == 3


async def test_a_throttled_sender_shows_until_when(
    db: Database, dashboard: httpx.AsyncClient
) -> None:
    campaign_id = make_campaign(db)
    move_to(db, campaign_id, S.SCHEDULED, S.QUEUED, S.SENDING)
    until = datetime.now(UTC) + timedelta(hours=12)
    catalog.set_sender_throttled_until(db, SANDBOX_SENDER.phone_number_id, until)
    page = await dashboard.get(f"/dashboard/campaigns/{campaign_id}/live")
    assert 'id="throttled"' in page.text
    assert f"Throttled until {until.strftime('%Y-%m-%d %H:%M')}" in page.text
    assert 'data-live="1"' in page.text  # the page keeps refreshing itself


async def test_an_action_while_temporal_is_unreachable_says_so(db: Database) -> None:
    seed(db)
    campaign_id = make_campaign(db)
    move_to(db, campaign_id, S.SCHEDULED, S.QUEUED, S.SENDING)
    settings = make_settings(db, TEMPORAL_ADDRESS="127.0.0.1:9")  # nothing listens there
    app = create_app(settings, db)  # builds its own client, connecting lazily
    async with served(app) as client:
        await sign_in(client)
        page_url = f"/dashboard/campaigns/{campaign_id}"
        answer = await post_form(client, page_url, f"{page_url}/actions/pause")
    assert answer.status_code == 503
    assert "Temporal is unreachable; nothing was changed" in answer.text
    assert campaigns.get_campaign(db, campaign_id).status is S.SENDING
