"""Node placement and edge routing for the renderer's grid pictures: no edge crosses a node it does not touch.

Nodes sit in the cells of a grid (a column per layer and a row per scale in ``render.py``; any
sortable keys here); nodes sharing a cell are stacked. Between two rows runs a horizontal
*channel*, between two columns a vertical *gap*, and neither holds any node. Every edge is a chain
of cubic Bézier pieces, each of which stays inside the edge's own node's row, a gap or a channel:

- **neighbouring columns**: out of the source's side, an S-curve across the gap, into the target's side;
- **farther columns**: an S-curve into a *lane* of a channel, straight along the lane past the columns
  in between, an S-curve out of it to the target. Edges that run beside each other get lanes of their
  own (interval colouring), so two edges never merge into one line, and a lane is reused only a
  column later, so one edge never seems to continue another;
- **the same column**: a straight vertical segment when no node lies between the two, else a bulge
  into the gap on the right.

A Bézier curve lies within the convex hull of its control points, and every piece's control points lie
in one node-free region, which is the guarantee; tests/test_render_geometry.py checks it on the SVG
Graphviz draws. Edges leave and enter nodes at ports spread along the sides, ordered by where the edge
goes next, so a fan of edges does not cross itself at the node.

Units are points, y downwards (as on screen); ``render.py`` flips y for Graphviz, whose ``neato -n2``
keeps the positions and the paths exactly as given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Hashable, Iterable, Mapping, Sequence

import networkx as nx

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """A node's box: centre and size, in points (y downwards)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def left(self) -> float:
        return self.x - self.w / 2

    @property
    def right(self) -> float:
        return self.x + self.w / 2

    @property
    def top(self) -> float:
        return self.y - self.h / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True)
class Route:
    """An edge's path: cubic Bézier control points (``3n + 1`` of them) ending at the arrow's base, and
    the arrow's tip on the target's border."""

    points: tuple[Point, ...]
    tip: Point


@dataclass(frozen=True)
class Spacing:
    """The distances of a grid picture, in points."""

    col_gap: float = 54.0  # between two columns: room for the S-curves
    stack_gap: float = 8.0  # between nodes stacked in one cell
    lane_pitch: float = 2.4  # between two lanes of a channel, while the channel is below max_channel
    min_channel: float = 26.0  # a channel between two rows, however few lanes it holds
    max_channel: float = 110.0  # ... and however many (its lanes then move closer together)
    outer_channel: float = 6.0  # above the first row and below the last one, when no lane runs there
    lane_margin: float = 6.0  # between a row's nodes and the nearest lane
    arrow: float = 5.0  # length of an arrowhead (Graphviz: 10 x arrowsize)


@dataclass
class GridLayout:
    boxes: dict[str, Box]
    routes: dict[tuple[str, str], Route]
    columns: list[tuple[Hashable, float, float]]  # (key, left, right) per column, left to right
    rows: list[tuple[Hashable, float, float]]  # (key, top, bottom) per row band, top to bottom
    width: float = 0.0  # the extent of everything drawn, from (0, 0)
    height: float = 0.0
    lanes: dict[int, int] = field(default_factory=dict)  # lanes per channel (channel k lies above row k)

    def shifted(self, dx: float, dy: float) -> "GridLayout":
        def move(p: Point) -> Point:
            return (p[0] + dx, p[1] + dy)

        return GridLayout(
            {n: Box(b.x + dx, b.y + dy, b.w, b.h) for n, b in self.boxes.items()},
            {e: Route(tuple(move(p) for p in r.points), move(r.tip)) for e, r in self.routes.items()},
            [(k, a + dx, b + dx) for k, a, b in self.columns],
            [(k, a + dy, b + dy) for k, a, b in self.rows],
            self.width,
            self.height,
            dict(self.lanes),
        )


@dataclass(frozen=True)
class GridFrame:
    """The geometry several pictures share, so a node at one grid point sits at the same place in each
    (a comparison's topologies): every column and row key (empty ones keep their room), and the least
    width of each column, height of each row and of each channel (channel k lies above row k)."""

    col_w: tuple[tuple[Hashable, float], ...]
    row_h: tuple[tuple[Hashable, float], ...]
    chan_h: tuple[float, ...]

    @classmethod
    def of(cls, layout: GridLayout) -> "GridFrame":
        """The frame a laid-out picture needs."""
        bottoms = [0.0] + [b for _, _, b in layout.rows]
        tops = [t for _, t, _ in layout.rows] + [layout.height]
        return cls(tuple((k, r - l) for k, l, r in layout.columns), tuple((k, b - t) for k, t, b in layout.rows), tuple(t - b for t, b in zip(tops, bottoms)))

    def union(self, other: "GridFrame") -> "GridFrame":
        """Room for both: every key of either, each size the larger (channels of frames with the same rows)."""

        def merge(a, b):
            out = dict(a)
            for k, v in b:
                out[k] = max(out.get(k, 0.0), v)
            return tuple(sorted(out.items()))

        rows = merge(self.row_h, other.row_h)
        same = len(self.chan_h) == len(other.chan_h) == len(rows) + 1
        chan = tuple(map(max, self.chan_h, other.chan_h)) if same else (self.chan_h if len(self.chan_h) == len(rows) + 1 else other.chan_h)
        return GridFrame(merge(self.col_w, other.col_w), rows, chan)


def grid_layout(
    cells: Mapping[str, tuple[Hashable, Hashable]],
    sizes: Mapping[str, tuple[float, float]],
    edges: Iterable[tuple[str, str]],
    spacing: Spacing = Spacing(),
    widths: Mapping[tuple[str, str], float] | None = None,
    frame: GridFrame | None = None,
) -> GridLayout:
    """Place ``cells`` (node -> (column key, row key), stacked in the mapping's order within a cell)
    with ``sizes`` (node -> (width, height)), and route ``edges`` so that none crosses a node it does not
    touch. Columns and rows follow the sorted keys; empty ones take no room, unless ``frame`` names
    them: then every column, row and channel is at least as large as the frame says (pictures laid
    out with the union of their frames put each grid point at the same place). ``widths`` (edge -> pen
    width in points) keeps thick edges in neighbouring lanes apart."""
    col_keys = sorted({c for c, _ in cells.values()} | {k for k, _ in (frame.col_w if frame else ())})
    row_keys = sorted({r for _, r in cells.values()} | {k for k, _ in (frame.row_h if frame else ())})
    ci = {k: i for i, k in enumerate(col_keys)}
    ri = {k: i for i, k in enumerate(row_keys)}
    where = {n: (ci[c], ri[r]) for n, (c, r) in cells.items()}
    stacks: dict[tuple[int, int], list[str]] = {}
    for n in cells:
        stacks.setdefault(where[n], []).append(n)
    n_cols, n_rows = len(col_keys), len(row_keys)
    col_w = [0.0] * n_cols
    row_h = [0.0] * n_rows
    for (c, r), members in stacks.items():
        col_w[c] = max(col_w[c], max(sizes[n][0] for n in members))
        row_h[r] = max(row_h[r], sum(sizes[n][1] for n in members) + spacing.stack_gap * (len(members) - 1))
    if frame is not None:
        least_w, least_h = dict(frame.col_w), dict(frame.row_h)
        col_w = [max(w, least_w.get(k, 0.0)) for w, k in zip(col_w, col_keys)]
        row_h = [max(h, least_h.get(k, 0.0)) for h, k in zip(row_h, row_keys)]
    edges = [(u, v) for u, v in edges if u in where and v in where and u != v]

    # 1. which channel and lane each long edge runs in (indices only: no geometry needed yet)
    lane_of = _assign_lanes(edges, where, n_cols, n_rows)
    lanes = {k: 1 + max((lane for (kk, lane) in lane_of.values() if kk == k), default=-1) for k in range(n_rows + 1)}
    # per lane, beyond the pitch between hairlines: the width of its thickest edge, kept free even
    # where a crowded channel squeezes the pitch
    extra = {k: [0.0] * lanes[k] for k in lanes}
    for e, (k, lane) in lane_of.items():
        extra[k][lane] = max(extra[k][lane], 1.6 * ((widths or {}).get(e, 0.0) - 0.5))  # its width, and some air

    # 2. geometry of columns, rows and channels
    lefts, x = [], 0.0
    for c in range(n_cols):
        lefts.append(x)
        x += col_w[c] + spacing.col_gap
    width = x - spacing.col_gap
    chan_top, chan_h, row_top, y = [], [], [], 0.0
    for k in range(n_rows + 1):
        if lanes[k]:
            need = (lanes[k] + 1) * spacing.lane_pitch + sum(extra[k]) + 2 * spacing.lane_margin
            h = min(max(need, spacing.min_channel), spacing.max_channel)
        else:
            h = spacing.outer_channel if k in (0, n_rows) else spacing.min_channel
        if frame is not None and len(frame.chan_h) == n_rows + 1:
            h = max(h, frame.chan_h[k])
        chan_top.append(y)
        chan_h.append(h)
        y += h
        if k < n_rows:
            row_top.append(y)
            y += row_h[k]
    height = y
    boxes: dict[str, Box] = {}
    for (c, r), members in stacks.items():
        total = sum(sizes[n][1] for n in members) + spacing.stack_gap * (len(members) - 1)
        top = row_top[r] + (row_h[r] - total) / 2
        for n in members:
            w, h = sizes[n]
            boxes[n] = Box(lefts[c] + col_w[c] / 2, top + h / 2, w, h)
            top += h + spacing.stack_gap
    right = [lefts[c] + col_w[c] for c in range(n_cols)]

    def lane_y(k: int, lane: int) -> float:
        """Equal gaps between the lanes' strokes, filling the channel's inside (never more than it)."""
        inner = chan_h[k] - 2 * spacing.lane_margin
        ex, n = extra[k], lanes[k]
        gap = (inner - sum(ex)) / (n + 1)
        if gap < 0.3:  # more thick lanes than fit: shrink everything alike
            scale = inner / ((n + 1) * 0.3 + sum(ex))
            ex, gap = [x * scale for x in ex], 0.3 * scale
        return chan_top[k] + spacing.lane_margin + sum(ex[:lane]) + (lane + 1) * gap + ex[lane] / 2

    # 3. what each edge does, and where it goes next from either end (to order the ports)
    plans: dict[tuple[str, str], tuple[str, float | None]] = {}
    sides: dict[tuple[str, str], list[tuple[float, float, tuple[str, str], str]]] = {}  # (node, side) -> (order key, tie, edge, end)

    def port(node: str, side: str, toward: float, tie: float, e: tuple[str, str], end: str) -> None:
        sides.setdefault((node, side), []).append((toward, tie, e, end))

    for e in edges:
        u, v = e
        (cu, _), (cv, _) = where[u], where[v]
        bu, bv = boxes[u], boxes[v]
        if cu == cv:
            between = [n for n, (c, _) in where.items() if c == cu and n not in e and min(bu.y, bv.y) < boxes[n].y < max(bu.y, bv.y)]
            if not between:
                plans[e] = ("vertical", None)
                down = bv.y > bu.y
                port(u, "bottom" if down else "top", bv.x, 0.0, e, "tail")
                port(v, "top" if down else "bottom", bu.x, 0.0, e, "head")
            else:
                plans[e] = ("bulge", None)
                port(u, "right", bv.y, 0.0, e, "tail")
                port(v, "right", bu.y, 0.0, e, "head")
            continue
        forward = cv > cu
        out_side, in_side = ("right", "left") if forward else ("left", "right")
        if e in lane_of:
            ly = lane_y(*lane_of[e])
            plans[e] = ("lane", ly)
            port(u, out_side, ly, -abs(cv - cu), e, "tail")
            port(v, in_side, ly, -abs(cv - cu), e, "head")
        else:
            plans[e] = ("adjacent", None)
            port(u, out_side, bv.y, 0.0, e, "tail")
            port(v, in_side, bu.y, 0.0, e, "head")

    ends: dict[tuple[tuple[str, str], str], Point] = {}
    for (node, side), items in sides.items():
        b = boxes[node]
        items.sort(key=lambda t: (t[0], t[1]))
        horizontal = side in ("top", "bottom")
        extent = max((b.w if horizontal else b.h) - 8.0, 0.0)  # ports keep 4 pt off the corners
        step = min(4.0, extent / (len(items) - 1)) if len(items) > 1 else 0.0
        for i, (_, _, e, end) in enumerate(items):
            offset = (i - (len(items) - 1) / 2) * step
            if side == "right":
                ends[(e, end)] = (b.right, b.y + offset)
            elif side == "left":
                ends[(e, end)] = (b.left, b.y + offset)
            elif side == "top":
                ends[(e, end)] = (b.x + offset, b.top)
            else:
                ends[(e, end)] = (b.x + offset, b.bottom)

    # 4. the paths
    routes: dict[tuple[str, str], Route] = {}
    a = spacing.arrow
    for e, (kind, ly) in plans.items():
        u, v = e
        (cu, _), (cv, _) = where[u], where[v]
        p, q = ends[(e, "tail")], ends[(e, "head")]
        path = _Path(p)
        if kind == "vertical":
            tip = q
            path.line((q[0], q[1] - a if q[1] > p[1] else q[1] + a))
        elif kind == "bulge":
            out = right[cu] + 0.6 * spacing.col_gap
            path.line((right[cu], p[1]))
            path.curve((out, p[1]), (out, q[1]), (right[cu], q[1]))
            tip = q
            path.line((q[0] + a, q[1]))
        else:
            forward = cv > cu
            step = 1 if forward else -1
            exit_x = right[cu] if forward else lefts[cu]
            entry_x = lefts[cv] if forward else right[cv]
            path.line((exit_x, p[1]))
            if kind == "lane":
                near = lefts[cu + 1] if forward else right[cu - 1]
                far = right[cv - 1] if forward else lefts[cv + 1]
                path.s_curve((near, ly))
                path.line((far, ly))
            path.s_curve((entry_x, q[1]))
            tip = q
            path.line((q[0] - a * step, q[1]))
        routes[e] = Route(tuple(path.points), tip)
    return GridLayout(
        boxes,
        routes,
        [(col_keys[c], lefts[c], right[c]) for c in range(n_cols)],
        [(row_keys[r], row_top[r], row_top[r] + row_h[r]) for r in range(n_rows)],
        width,
        height,
        lanes,
    )


class _Path:
    """A chain of cubic Bézier pieces, as Graphviz's ``pos`` wants them."""

    def __init__(self, start: Point):
        self.points: list[Point] = [start]

    def curve(self, c1: Point, c2: Point, end: Point) -> None:
        self.points += [c1, c2, end]

    def line(self, end: Point) -> None:
        (x0, y0), (x1, y1) = self.points[-1], end
        if abs(x1 - x0) + abs(y1 - y0) < 1e-6:
            return
        self.curve((x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3), (x0 + 2 * (x1 - x0) / 3, y0 + 2 * (y1 - y0) / 3), end)

    def s_curve(self, end: Point) -> None:
        """Leave and arrive horizontally; the piece stays within the rectangle its two ends span."""
        (x0, y0), (x1, y1) = self.points[-1], end
        mid = (x0 + x1) / 2
        self.curve((mid, y0), (mid, y1), end)


def _assign_lanes(edges: Sequence[tuple[str, str]], where: Mapping[str, tuple[int, int]], n_cols: int, n_rows: int) -> dict[tuple[str, str], tuple[int, int]]:
    """(channel, lane) for every edge that passes one column or more: the least crowded channel between
    its rows (for two nodes of one row: the channel above or below), then the lowest free lane."""
    long = [e for e in edges if abs(where[e[1]][0] - where[e[0]][0]) >= 2]
    # longest first, so the edges with the fewest good choices are placed while the channels are empty
    long.sort(key=lambda e: (-abs(where[e[1]][0] - where[e[0]][0]), where[e[0]], where[e[1]]))
    occupancy = [[0] * n_cols for _ in range(n_rows + 1)]
    channel_of: dict[tuple[str, str], int] = {}
    spans: dict[tuple[str, str], tuple[int, int]] = {}
    for e in long:
        (cu, ru), (cv, rv) = where[e[0]], where[e[1]]
        lo, hi = min(cu, cv) + 1, max(cu, cv) - 1
        if ru == rv:
            candidates = [ru, ru + 1]
            prefer = ru + 1 if ru < (n_rows - 1) / 2 else ru  # ties: the channel toward the middle
        else:
            candidates = list(range(min(ru, rv) + 1, max(ru, rv) + 1))
            prefer = rv if rv > ru else rv + 1  # ties: the channel beside the target's row
        best = min(candidates, key=lambda k: (max(occupancy[k][lo : hi + 1]), abs(k - prefer), k))
        for c in range(lo, hi + 1):
            occupancy[best][c] += 1
        channel_of[e] = best
        spans[e] = (lo, hi)
    result: dict[tuple[str, str], tuple[int, int]] = {}
    for k in range(n_rows + 1):
        mine = sorted((e for e in long if channel_of[e] == k), key=lambda e: (spans[e], where[e[0]], where[e[1]]))
        ends: list[int] = []  # per lane: the last column used so far
        members: list[list[tuple[str, str]]] = []
        for e in mine:
            lo, hi = spans[e]
            free = next((i for i, last in enumerate(ends) if last < lo - 1), None)  # a column apart at least
            if free is None:
                ends.append(hi)
                members.append([e])
            else:
                ends[free] = hi
                members[free].append(e)

        def leaning(group: list[tuple[str, str]]) -> float:  # < 0: its edges come from / go to rows above
            return sum((-1 if where[n][1] < k else 1) for e in group for n in e) / (2 * len(group))

        order = sorted(range(len(members)), key=lambda i: (leaning(members[i]), i))
        for lane, i in enumerate(order):
            for e in members[i]:
                result[e] = (k, lane)
    return result


def layered_cells(graph: nx.DiGraph) -> dict[str, tuple[int, int]]:
    """(column, row) per node of a DAG drawn left to right: each node as late as its successors allow
    (so a node that feeds one other sits right before it); within a column, nodes ordered by the mean
    position of their neighbours (a few sweeps both ways: fewer crossings), then moved as near that
    mean as the order allows."""
    order = list(nx.topological_sort(graph))
    depth: dict[str, int] = {}
    for n in reversed(order):
        depth[n] = 1 + max((depth[s] for s in graph.successors(n)), default=-1)
    top = max(depth.values(), default=0)
    columns: list[list[str]] = [[] for _ in range(top + 1)]
    for n in order:
        columns[top - depth[n]].append(n)
    height = max(len(c) for c in columns)
    row = {n: i + (height - len(c)) // 2 for c in columns for i, n in enumerate(c)}

    def mean(n: str, neighbours: list[str]) -> float:
        return sum(row[m] for m in neighbours) / len(neighbours) if neighbours else row[n]

    for sweep in range(6):
        backward = sweep % 2 == 1
        for c in reversed(columns) if backward else columns:
            want = {n: mean(n, list(graph.successors(n) if backward else graph.predecessors(n))) for n in c}
            if sweep >= 4:  # the last two: both sides count
                want = {n: mean(n, list(graph.successors(n)) + list(graph.predecessors(n))) for n in c}
            c.sort(key=lambda n: (want[n], row[n]))
            rows: list[int] = []
            for n in c:
                rows.append(max(rows[-1] + 1 if rows else 0, round(want[n])))
            for i in range(len(rows) - 1, -1, -1):  # past the last row: move up, keeping the order
                rows[i] = min(rows[i], height - len(rows) + i)
            row.update(zip(c, rows))
    return {n: (top - depth[n], row[n]) for n in order}
