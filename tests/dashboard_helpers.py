"""The dashboard under test without a browser: sign in, read the CSRF token, post forms."""

import re

import httpx

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def sign_in(
    client: httpx.AsyncClient, api_key: str = "", *, user: str = "", account: str = ""
) -> httpx.Response:
    """Sign in (an open dashboard needs no key) and answer the page after the redirect."""
    response = await client.get("/dashboard/login")
    if response.status_code == 200:  # the form: keys are configured
        response = await client.post(
            "/dashboard/login", data={"api_key": api_key, "user": user, "account": account}
        )
    assert response.status_code == 303, response.text
    return await client.get(response.headers["location"])


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


async def post_form(
    client: httpx.AsyncClient, page_url: str, action_url: str, data: dict[str, str] | None = None
) -> httpx.Response:
    """Post `data` to `action_url` with the CSRF token of the page at `page_url`."""
    page = await client.get(page_url)
    assert page.status_code == 200, page.text
    return await client.post(action_url, data={"csrf_token": csrf_token(page.text), **(data or {})})


def action_ids(html: str) -> set[str]:
    """The actions a page offers: the ids `action-<action>` of its buttons and links."""
    return set(re.findall(r'id="action-([a-z_]+)"', html))
