"""The output formats of the SANS ISC / DShield API, for :mod:`stormwatch.web.isc_api`.

ISC chooses the format by a bare query key: ``?xml`` (the default), ``?json``, ``?text``,
``?php`` (ISC diary 12373, 2012: "four output formats (xml, json, text, php) available by adding
?[format] to the end of the API url"; isc.sans.edu/api: "xml (default), json, text and php";
diary 27824, 2021: "By default, you will receive XML formatted data. But add "?json" to the URL
for JSON or "?tab" for a tab-delimited plain text file"). We also take ``?format=NAME``.

An answer is an :class:`IscDoc`: a root element name, scalar or nested fields, and rows. How
ISC lays these out, from its clients (research notes section 1.3):

- JSON: rows of ``topports`` and ``porthistory`` sit under the keys ``"0"``, ``"1"`` ... beside
  the scalar fields (``date``, ``limit``; ``startdate``, ``enddate``, ``port``); ``topips`` is a
  plain list; ``ip`` is wrapped: ``{"ip": {...}}``; ``port`` and ``infocon`` are bare objects.
- XML: ``<root>`` holding one element per field and one ``<row>`` element per row
  (``<topports><port>...``, ``<porthistory><portinfo>...``, ``<topips><ipaddress>...``).
- text and php: the layout is not documented and we have no sample of it; ours is a tab-
  separated line per row (or ``key<TAB>value`` lines) and PHP ``serialize()`` of the JSON value.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Response

Format = Literal["xml", "json", "text", "php"]
FORMATS: tuple[Format, ...] = ("json", "xml", "text", "php")
# ?tab and ?csv are ISC's names for its simple feeds; both come out as our tab-separated text
ALIASES: dict[str, Format] = {"tab": "text", "csv": "text", "txt": "text"}
MEDIA: dict[Format, str] = {"xml": "application/xml", "json": "application/json", "text": "text/plain",
                            "php": "application/vnd.php.serialized"}


@dataclass
class IscDoc:
    root: str
    fields: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    row_tag: str = "row"
    rows_as: Literal["numbered", "list", "none"] = "none"
    wrap_json: bool = False  # {"ip": {...}} rather than {...}

    def json_value(self) -> Any:
        if self.rows_as == "list":
            return self.rows
        body: dict[str, Any] = {str(i): r for i, r in enumerate(self.rows)} if self.rows_as == "numbered" else {}
        body.update(self.fields)
        return {self.root: body} if self.wrap_json else body


def choose(keys: list[str], named: str | None) -> Format:
    """The format a request asks for: ``?format=NAME``, else the first bare format key, else XML."""
    for name in ([named] if named else []) + keys:
        n = (name or "").lower()
        n = ALIASES.get(n, n)
        if n in FORMATS:
            return n
    return "xml"


def render(doc: IscDoc, fmt: Format, status: int = 200) -> Response:
    body = {"json": _json, "xml": _xml, "text": _text, "php": _php}[fmt](doc)
    return Response(body, status_code=status, media_type=MEDIA[fmt] + ("; charset=utf-8" if fmt != "json" else ""))


def _json(doc: IscDoc) -> str:
    return json.dumps(doc.json_value())


def _xml_value(parent: ET.Element, tag: str, value: Any) -> None:
    el = ET.SubElement(parent, tag)
    if isinstance(value, dict):
        for k, v in value.items():
            _xml_value(el, k, v)
    elif value is not None:
        el.text = str(value)


def _xml(doc: IscDoc) -> str:
    root = ET.Element(doc.root)
    for k, v in doc.fields.items():
        _xml_value(root, k, v)
    for row in doc.rows:
        _xml_value(root, doc.row_tag, row)
    # ElementTree escapes text and drops nothing; XML 1.0 cannot hold most control characters,
    # and no field of ours carries any (addresses, numbers, dates, level colours)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flat(f"{prefix}.{k}" if prefix else k, v)]
    return [(prefix, value)]


def _cell(v: Any) -> str:
    return "" if v is None else " ".join(str(v).split())


def _text(doc: IscDoc) -> str:
    if doc.rows or doc.rows_as != "none":
        return "".join("\t".join(_cell(v) for v in row.values()) + "\n" for row in doc.rows)
    pairs = _flat("", doc.fields)
    if len(pairs) == 1:  # e.g. infocon: one word, as ISC's infocon.txt
        return _cell(pairs[0][1]) + "\n"
    return "".join(f"{k}\t{_cell(v)}\n" for k, v in pairs)


def php_serialize(v: Any) -> str:
    """PHP's ``serialize()`` of a JSON-like value (https://www.php.net/manual/en/function.serialize.php):
    lengths of strings are in bytes of UTF-8."""
    if v is None:
        return "N;"
    if isinstance(v, bool):
        return f"b:{int(v)};"
    if isinstance(v, int):
        return f"i:{v};"
    if isinstance(v, float):
        return f"d:{v!r};"
    if isinstance(v, list):
        v = {i: x for i, x in enumerate(v)}
    if isinstance(v, dict):
        items = "".join(php_serialize(k if isinstance(k, int) else str(k)) + php_serialize(x) for k, x in v.items())
        return f"a:{len(v)}:{{{items}}}"
    s = str(v)
    return f's:{len(s.encode("utf-8"))}:"{s}";'


def _php(doc: IscDoc) -> str:
    return php_serialize(doc.json_value())
