"""Liveness (/health) and readiness (/ready), with the database up, down and back."""

from api.support import ApiClient, ClientFactory, Outage
from helpers import TcpProxy

READY = {"message": "ready"}
NOT_READY = {"message": "database unavailable"}


async def test_health_answers_200_ok(client: ApiClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": "ok"}


async def test_health_answers_200_while_the_database_is_down(outage: Outage) -> None:
    outage.proxy.down()

    response = await outage.client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"message": "ok"}


async def test_ready_answers_200_when_the_database_answers(client: ApiClient) -> None:
    response = await client.get("/ready")

    assert response.status_code == 200
    assert response.json() == READY


async def test_ready_answers_503_while_the_database_is_down_and_200_once_it_is_back(
    outage: Outage,
) -> None:
    client, proxy = outage.client, outage.proxy
    assert (await client.get("/ready")).status_code == 200  # a pooled connection now exists

    proxy.down()
    # The first probe meets the reset pooled connection, the second a refused new one.
    for _ in range(2):
        response = await client.get("/ready")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        assert response.json() == NOT_READY

    proxy.up()  # no restart of the app: its pool reconnects on the next use
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == READY


async def test_app_starts_while_the_database_is_down_and_serves_once_it_is_back(
    make_client: ClientFactory, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, proxied_url = db_proxy
    proxy.down()

    async with make_client(proxied_url) as client:
        assert (await client.get("/health")).status_code == 200
        not_ready = await client.get("/ready")
        assert not_ready.status_code == 503
        assert not_ready.json() == NOT_READY

        proxy.up()
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == READY
        created = await client.post("/jobs", json={"type": "noop", "payload": {"n": 1}})
        assert created.status_code == 201
