"""FHIR XML request bodies with `decimal` values (R4 `xml.html`, `datatypes.html#decimal`): parsed
as JSON numbers like a JSON body, stored, and read back in both formats."""

from __future__ import annotations

import httpx
from lxml import etree

XML = "application/fhir+xml"
FHIR_NS = {"f": "http://hl7.org/fhir"}
LOCATION = b"""<?xml version="1.0" encoding="UTF-8"?>
<Location xmlns="http://hl7.org/fhir">
  <status value="active"/>
  <name value="South Wing clinic"/>
  <position>
    <longitude value="-71.080000"/>
    <latitude value="42.256500"/>
    <altitude value="0"/>
  </position>
</Location>
"""


async def test_create_xml_location_decimals_created_and_read_as_json(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/Location", content=LOCATION, headers={"Content-Type": XML})
    assert created.status_code == 201, created.text
    location_id = created.headers["location"].split("/Location/")[1].split("/")[0]

    read = await client.get(f"/Location/{location_id}")

    assert read.status_code == 200
    body = read.json()
    assert body["name"] == "South Wing clinic"
    assert body["position"] == {"longitude": -71.08, "latitude": 42.2565, "altitude": 0}


async def test_create_xml_location_decimals_read_back_as_xml(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/Location", content=LOCATION, headers={"Content-Type": XML, "Accept": XML}
    )
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith(XML)
    location_id = etree.fromstring(created.content).find("f:id", FHIR_NS).get("value")

    read = await client.get(f"/Location/{location_id}", headers={"Accept": XML})

    assert read.status_code == 200
    assert read.headers["content-type"].startswith(XML)
    position = etree.fromstring(read.content).find("f:position", FHIR_NS)
    # Parsed as floats, as a JSON body is: trailing zeros go, and "0" comes back as "0.0".
    assert [(etree.QName(e).localname, e.get("value")) for e in position] == [
        ("longitude", "-71.08"),
        ("latitude", "42.2565"),
        ("altitude", "0.0"),
    ]
