"""SVG pictures from run folders, made safe to paste into a report page.

Why: ``archgraph report`` and the compare report inline the ``arch.svg`` / ``supernet.svg`` /
topology pictures they find in a run folder, and run folders are shared (a colleague's results, a
downloaded study). An SVG can carry ``<script>``, event-handler attributes (``onload=``) and
``javascript:`` links; pasted as is into an HTML page, the page would run them when opened. The
project's rule is that no file a user opens runs code, so every SVG read from disk goes through
:func:`safe_svg`: parsed as XML (Graphviz and matplotlib write well-formed SVG), everything that can
run code or load another document is removed, and the rest is written back. A file that does not
parse is not pasted at all (the caller draws the picture again from the run's graph, or says so).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"

# Elements that run code or embed another document: dropped with everything inside them.
_DROPPED = {"script", "foreignobject", "iframe", "object", "embed", "handler", "listener"}
_URL_ATTRS = {"href", "src", "action", "formaction", "values", "from", "to", "by"}
_UNSAFE_URL = re.compile(r"^\s*(javascript|vbscript|data\s*:\s*text/html)", re.IGNORECASE)

ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)


def _local(name: str) -> str:
    """``{namespace}tag`` -> ``tag``, lower-cased (SVG in HTML is case-insensitive about handlers)."""
    return name.rsplit("}", 1)[-1].lower()


def safe_svg(text: str) -> str | None:
    """The ``<svg>`` element of ``text`` without scripts, event handlers, scriptable links and
    embedded documents; None when ``text`` is not an SVG document."""
    start = text.find("<svg")
    if start < 0:
        return None
    try:
        root = ET.fromstring(text[start:])
    except ET.ParseError:
        return None
    if _local(root.tag) != "svg":
        return None
    _clean(root)
    return ET.tostring(root, encoding="unicode")


def _clean(element: ET.Element) -> None:
    for child in list(element):
        if not isinstance(child.tag, str) or _local(child.tag) in _DROPPED:
            element.remove(child)
        else:
            _clean(child)
    for name in list(element.attrib):
        local = _local(name)
        if local.startswith("on") or (local in _URL_ATTRS and _UNSAFE_URL.match(element.attrib[name] or "")):
            del element.attrib[name]
    if _local(element.tag) in {"set", "animate"} and _local(element.attrib.get("attributeName", "")) in _URL_ATTRS | {"onload"}:
        element.attrib.pop("attributeName", None)  # an animation that would write a link (or a handler) does nothing
