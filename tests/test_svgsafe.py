"""SVGs pasted into report pages: nothing in them can run (archgraph.outputs.svgsafe)."""

from __future__ import annotations

import shutil

import pytest

from archgraph.outputs.svgsafe import safe_svg

HOSTILE = """<?xml version="1.0"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10" onload="alert(1)">
  <script>alert(2)</script>
  <g class="node" id="node1" OnClick="alert(3)"><title>L1_s4</title><ellipse cx="5" cy="5" rx="4" ry="4" fill="#fff"/></g>
  <a xlink:href="javascript:alert(4)"><text x="1" y="9">x</text></a>
  <a href=" JavaScript:alert(5)"><text x="1" y="9">y</text></a>
  <a xlink:href="https://example.org/ok"><text x="1" y="9">z</text></a>
  <foreignObject width="5" height="5"><body xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="alert(6)"/></body></foreignObject>
  <set attributeName="href" to="javascript:alert(7)"/>
</svg>"""


def test_scripts_handlers_and_scriptable_links_are_removed_and_the_drawing_kept():
    clean = safe_svg(HOSTILE)
    assert clean is not None and clean.startswith("<svg")
    assert "alert" not in clean and "script" not in clean.lower() and "foreignObject" not in clean
    assert '<g class="node" id="node1">' in clean and "<title>L1_s4</title>" in clean and "ellipse" in clean
    assert "https://example.org/ok" in clean  # ordinary links stay


@pytest.mark.parametrize("text", ["", "not svg at all", "<svg><g></svg>", "<svg></svg><", "<?xml version='1.0'?><html/>"])
def test_what_is_not_an_svg_document_is_not_pasted(text):
    assert safe_svg(text) is None


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot to draw a real picture")
def test_a_graphviz_picture_keeps_every_node_and_edge():
    from archgraph.core.spaces_api import build_space
    from archgraph.outputs.render import picture

    svg = picture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3}), "svg").decode()
    clean = safe_svg(svg)
    assert clean is not None
    for mark in ('class="node"', 'class="edge"', "<title>", "<path", "<text"):
        assert clean.count(mark) == svg.count(mark), mark


def test_a_report_pastes_no_script_from_a_run_folders_picture(tmp_path):
    """A run folder from someone else: its arch.svg carries scripts; the report page must not."""
    from helpers import search_run

    from archgraph.cli import main

    run = search_run(tmp_path / "run")
    (run / "arch.svg").write_text(HOSTILE)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "alert(" not in page and "<title>L1_s4</title>" in page
