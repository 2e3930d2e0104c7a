"""A ``flow-diagram`` directive: boxes joined by labelled arrows, drawn as inline SVG.

The architecture page draws a trial's path through the components with it. The figure is
generated at build time from the directive's text, so it needs no drawing program and
cannot drift out of the page's source::

    ```{flow-diagram}
    :caption: A trial's path

    Optimizer | asks for trials, is told results | morphml_dask.optim
    -> Trial (ask), TrialResult (tell)
    SearchState | events in, instructions out | driver/_state.py
    ```

A box line is ``title | what it does | where it lives``; a line starting with ``->`` labels
the arrow from the box above to the box below. Other builders than HTML get the same text as
a literal block.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

WIDTH = 720
BOX_WIDTH = 360
BOX_HEIGHT = 58
GAP = 46
MARGIN = 8


@dataclass
class Box:
    title: str
    role: str
    place: str
    arrow: str = ""  # the label of the arrow into this box


def parse(lines: list[str]) -> list[Box]:
    """The boxes of a diagram, each with the label of the arrow that enters it."""
    boxes: list[Box] = []
    label = ""
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("->"):
            if not boxes:
                raise ExtensionError(f"flow-diagram line {number}: an arrow before any box")
            label = line[2:].strip()
            continue
        parts = [part.strip() for part in line.split("|")]
        if len(parts) != 3 or not parts[0]:
            raise ExtensionError(
                f"flow-diagram line {number}: expected 'title | what it does | where it lives', "
                f"got {line!r}"
            )
        boxes.append(Box(parts[0], parts[1], parts[2], label))
        label = ""
    if len(boxes) < 2:
        raise ExtensionError("flow-diagram: draw at least two boxes")
    return boxes


def svg(boxes: list[Box], caption: str) -> str:
    """The diagram as an SVG document, top to bottom."""
    height = 2 * MARGIN + len(boxes) * BOX_HEIGHT + (len(boxes) - 1) * GAP
    left = (WIDTH - BOX_WIDTH) // 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="morphml-flow" viewBox="0 0 {WIDTH} '
        f'{height}" width="100%" role="img" aria-label="{escape(caption)}" '
        'font-family="sans-serif">',
        '<defs><marker id="morphml-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for index, box in enumerate(boxes):
        top = MARGIN + index * (BOX_HEIGHT + GAP)
        if index:
            start, end = top - GAP, top
            parts.append(
                f'<line x1="{WIDTH // 2}" y1="{start + 2}" x2="{WIDTH // 2}" y2="{end - 2}" '
                'stroke="#555" stroke-width="1.5" marker-end="url(#morphml-arrow)"/>'
            )
            if box.arrow:
                parts.append(
                    f'<text x="{WIDTH // 2 + 10}" y="{start + GAP // 2 + 4}" font-size="12" '
                    f'fill="#333">{escape(box.arrow)}</text>'
                )
        parts.append(
            f'<rect x="{left}" y="{top}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" '
            'fill="#eef3fb" stroke="#3d6fb6" stroke-width="1.5"/>'
        )
        parts.append(
            f'<text x="{WIDTH // 2}" y="{top + 20}" text-anchor="middle" font-size="15" '
            f'font-weight="bold" fill="#1b2a41">{escape(box.title)}</text>'
        )
        parts.append(
            f'<text x="{WIDTH // 2}" y="{top + 37}" text-anchor="middle" font-size="12" '
            f'fill="#333">{escape(box.role)}</text>'
        )
        parts.append(
            f'<text x="{WIDTH // 2}" y="{top + 51}" text-anchor="middle" font-size="11" '
            f'font-family="monospace" fill="#666">{escape(box.place)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


class FlowDiagram(SphinxDirective):
    has_content = True
    option_spec = {"caption": directives.unchanged}  # noqa: RUF012 (docutils' interface)

    def run(self) -> list[nodes.Node]:
        caption = self.options.get("caption", "")
        boxes = parse(list(self.content))
        text = "\n".join(
            (f"  -> {b.arrow}\n" if b.arrow else "") + f"[{b.title}] {b.role} ({b.place})"
            for b in boxes
        )
        figure = nodes.container(classes=["morphml-flow-diagram"])
        figure += nodes.raw("", svg(boxes, caption), format="html")
        elsewhere = addnodes.only(expr="not html")
        elsewhere += nodes.literal_block(text, text)
        figure += elsewhere
        if caption:
            figure += nodes.paragraph(caption, caption, classes=["caption"])
        return [figure]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("flow-diagram", FlowDiagram)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
