"""The ISC/DShield-compatible subset under /api (stormwatch.web.isc_api): ISC's field names and
layouts (JSON rows under "0", "1" ...; {"ip": {...}}), the format keys (?json, ?xml default,
?text, ?php, ?format=), ISC's error bodies, and the figures of the small store of test_web_api."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from stormwatch.web.api_isc_format import php_serialize
from stormwatch.web.app import create_app
from test_web_api import ATTACKER, TestClient, make_state


@pytest.fixture
def isc(tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    st = make_state(tmp_path)
    with TestClient(create_app(state=st)) as c:
        yield c
    st.store.close()


def test_infocon_in_every_format(isc: TestClient) -> None:
    assert isc.get("/api/infocon?json").json() == {"status": "green"}
    assert isc.get("/api/infocon", params={"format": "json"}).json() == {"status": "green"}
    r = isc.get("/api/infocon")  # XML is ISC's default
    assert r.headers["content-type"].startswith("application/xml")
    assert ET.fromstring(r.text).find("status").text == "green"  # type: ignore[union-attr]
    assert isc.get("/api/infocon?text").text == "green\n"
    assert isc.get("/api/infocon?php").text == 'a:1:{s:6:"status";s:5:"green";}'


def test_port(isc: TestClient) -> None:
    got = isc.get("/api/port/139?json").json()
    assert got["number"] == 139
    assert got["data"] == {"date": "2006-08-14", "records": 15, "targets": 10, "sources": 11, "tcp": 100, "udp": 0,
                           "datein": "2006-08-14", "portin": 139}
    assert set(got["services"]) == {"tcp", "udp"} and set(got["services"]["tcp"]) == {"service", "name"}
    root = ET.fromstring(isc.get("/api/port/139").text)
    assert root.tag == "port" and root.findtext("data/records") == "15" and root.find("services/tcp") is not None
    quiet = isc.get("/api/port/8080?json").json()["data"]
    assert (quiet["records"], quiet["targets"], quiet["sources"]) == (0, 0, 0)
    assert isc.get("/api/portdate/139/2006-08-13?json").json()["data"]["records"] == 3


def test_porthistory_layout_and_a_client_reading_it(isc: TestClient) -> None:
    got = isc.get("/api/porthistory/139/2006-08-01/2006-08-14?json").json()
    assert (got["startdate"], got["enddate"], got["port"]) == ("2006-08-01", "2006-08-14", 139)
    # what hrbrmstr/dshield's port_history() does with it: drop the three keys, the rest are rows
    rows = [v for k, v in got.items() if k not in ("startdate", "enddate", "port")]
    assert rows == [{"date": "2006-08-13", "records": 3, "targets": 1, "sources": 3, "tcp": 100, "udp": 0},
                    {"date": "2006-08-14", "records": 15, "targets": 10, "sources": 11, "tcp": 100, "udp": 0}]
    assert list(got)[:2] == ["0", "1"]
    root = ET.fromstring(isc.get("/api/porthistory/139/2006-08-01/2006-08-14").text)
    assert [p.findtext("date") for p in root.iter("portinfo")] == ["2006-08-13", "2006-08-14"]
    default = isc.get("/api/porthistory/139?json").json()  # 30 days up to the latest day
    assert (default["startdate"], default["enddate"]) == ("2006-07-15", "2006-08-14")


def test_topports_and_topips(isc: TestClient) -> None:
    got = isc.get("/api/topports/records/2/2006-08-14?json").json()
    assert (got["date"], got["limit"]) == ("2006-08-14", 2)
    assert [got["0"], got["1"]] == [{"rank": 1, "targetport": 139, "records": 15, "targets": 10, "sources": 11},
                                    {"rank": 2, "targetport": 445, "records": 2, "targets": 1, "sources": 1}]
    # a client that strips the scalar keys and sorts the rest by int (rshipp/python-dshield does this)
    rows = [got[k] for k in sorted((k for k in got if k.isdigit()), key=int)]
    assert [r["targetport"] for r in rows] == [139, 445]
    assert isc.get("/api/topports?json").json()["limit"] == 10
    assert isc.get("/api/topports/records/100000?json").json()["limit"] == 1000  # capped
    xml = ET.fromstring(isc.get("/api/topports/sources/3/2006-08-14").text)
    assert [p.findtext("targetport") for p in xml.iter("port")] == ["139", "137", "445"]
    ips = isc.get("/api/topips/records/2/2006-08-14?json").json()
    assert ips[0] == {"rank": 1, "source": ATTACKER, "reports": 7, "targets": 2}
    by_targets = isc.get("/api/topips/attacks/1/2006-08-14?json").json()
    assert by_targets == [{"rank": 1, "source": ATTACKER, "reports": 7, "targets": 2}]
    assert isc.get("/api/topports/sources/1/2006-08-14?text").text == "1\t139\t15\t10\t11\n"


def test_ip(isc: TestClient) -> None:
    got = isc.get(f"/api/ip/{ATTACKER}?json").json()["ip"]
    assert (got["number"], got["count"], got["attacks"], got["mindate"], got["maxdate"]) == \
        (ATTACKER, 7, 2, "2006-08-14", "2006-08-14")
    assert got["updated"] == "2006-08-14 13:00:00"
    assert {"as", "asname", "ascountry", "network", "comment", "maxrisk"} <= set(got)
    unknown = isc.get("/api/ip/192.0.2.250?json").json()["ip"]
    assert unknown["count"] is None and unknown["attacks"] is None
    assert isc.get("/api/ip/2001:DB8:0:0::1?json").json()["ip"]["number"] == "2001:db8::1"
    assert ET.fromstring(isc.get(f"/api/ip/{ATTACKER}").text).findtext("count") == "7"


@pytest.mark.parametrize(("url", "error"), [
    ("/api/port/65536?json", "bad port number"),
    ("/api/port/abc?json", "bad port number"),
    ("/api/port/-1?json", "bad port number"),
    ("/api/porthistory/x/2006-08-01/2006-08-02?json", "bad port number"),
    ("/api/porthistory/139/2006-02-30/2006-08-02?json", "bad date"),
    ("/api/porthistory/139/2006-08-10/2006-08-01?json", "bad date range"),
    ("/api/portdate/139/yesterday?json", "bad date"),
    ("/api/porthistory/139/0001-01-01/0001-01-05?json", "bad date"),
    ("/api/topports/colour/10?json", "bad sort order"),
    ("/api/topports/records/0?json", "bad limit"),
    ("/api/topports/records/ten?json", "bad limit"),
    ("/api/topips/records/5/2006-99-01?json", "bad date"),
    ("/api/ip/999.1.2.3?json", "bad IP address"),
    ("/api/ip/badip?json", "bad IP address"),
])
def test_bad_input_gets_isc_error_body_and_422(isc: TestClient, url: str, error: str) -> None:
    r = isc.get(url)
    assert r.status_code == 422
    assert r.json()["error"].startswith(error)


def test_errors_keep_the_asked_format(isc: TestClient) -> None:
    r = isc.get("/api/port/99999")
    assert r.status_code == 422 and ET.fromstring(r.text).findtext("error") == "bad port number"


def test_php_serialize_counts_bytes() -> None:
    assert php_serialize({"a": "é", "b": [1, None, True, 1.5]}) == \
        'a:2:{s:1:"a";s:2:"é";s:1:"b";a:4:{i:0;i:1;i:1;N;i:2;b:1;i:3;d:1.5;}}'
