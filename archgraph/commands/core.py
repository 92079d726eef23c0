"""Commands on graphs: list spaces/strategies/ops, inspect a space, render and sample architectures."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rich.table import Table

from archgraph.commands import add_config_args, rank_console
from archgraph.configtools import yaml_text
from archgraph.errors import ArchgraphError, GraphError

console = rank_console()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the registered search spaces and their hyper-parameters")
    p.set_defaults(func=cmd_spaces)
    p = sub.add_parser("strategies", help="list the registered search strategies and their options")
    p.set_defaults(func=cmd_strategies)
    p = sub.add_parser("ops", help="list the registered candidate ops")
    p.set_defaults(func=cmd_ops)

    p = sub.add_parser("inspect", help="size of a search space (nodes, connections, choice points, parameters) or of an architecture file (parameters, FLOPs at --crop)")
    p.add_argument("file", nargs="?", default=None, help="an architecture (or any graph) YAML, or a run folder holding arch.yaml; without it: the space of --space / the config")
    p.add_argument("--space", default=None, help="space name (default: the config's space.name, dcss)")
    p.add_argument(
        "--crop", type=int, nargs=2, metavar=("H", "W"), default=None, help="image size the FLOPs are counted at (default for FILE: the config's data.crop, 64 64; a space's FLOPs only when given)"
    )
    add_config_args(p, positional=False)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("render", help="draw a graph, an architecture, a run folder or a space's supernet (SVG/PNG/PDF/DOT)")
    p.add_argument("file", nargs="?", default=None, help="graph/architecture YAML or a run folder")
    p.add_argument("--space", default=None, help="draw the supernet of this space instead of FILE")
    p.add_argument("--supernet", action="store_true", help="for a run folder: draw the supernet with its searched edge weights")
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="draw a preset, a hand-designed architecture of the config's space (DCSS: fcn, hourglass, deeplabv3, hrnet; `archgraph spaces` lists every space's) with --set space.KEY=...",
    )
    add_config_args(p, positional=False)
    p.add_argument("-o", "--output", required=True, help="output picture; the suffix picks the format (.svg .png .pdf .dot)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "sample", help="a random architecture of a space (uniform at every choice point, then decoded); its head predicts the classes of data.* (default: synthetic, 5) unless space.num_classes is set"
    )
    p.add_argument("--space", default=None, help="space name (default: dcss)")
    add_config_args(p, positional=False)
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same architecture")
    p.add_argument("-o", "--output", required=True, help="architecture YAML to write")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("config", help="print the full resolved config (defaults <- CONFIG <- --set) as YAML")
    add_config_args(p)
    p.set_defaults(func=cmd_config)


# ----------------------------------------------------------------------------------------------


def resolve_config(args: argparse.Namespace):
    from archgraph.config import load_config

    overrides = list(getattr(args, "overrides", []) or [])
    space = getattr(args, "space", None)
    if space:
        overrides.insert(0, f"space.name={space}")
    return load_config(getattr(args, "config", None), overrides)


def space_graph(cfg):
    """The config's supernet, its head sized for the config's dataset (``space.num_classes`` when
    set, else the dataset's class count, as a search fills it in after loading the data)."""
    import dataclasses

    from archgraph.core.registry import get_space
    from archgraph.core.spaces_api import build_space
    from archgraph.data import dataset_num_classes

    params = dict(cfg.space_params)
    takes_classes = any(f.name == "num_classes" for f in dataclasses.fields(get_space(cfg.space_name).params))
    if takes_classes and not params.get("num_classes"):
        params["num_classes"] = dataset_num_classes(cfg.data.name, cfg.data.num_classes)
    return build_space(cfg.space_name, params)


def cmd_spaces(args: argparse.Namespace) -> int:
    from archgraph.core.registry import PLUGIN_ERRORS, UNDECLARED, list_presets, list_spaces, space_kinds

    table = Table(title="search spaces")
    for col in ("name", "description", "choice kinds", "presets (--preset NAME)", "hyper-parameters (space.KEY, default)"):
        table.add_column(col)
    for info in list_spaces():
        params = ", ".join(f"{f.name}={_default(f)}" for f in dataclasses.fields(info.params))
        try:
            kinds = ", ".join(sorted(space_kinds(info)))
        except Exception as exc:  # noqa: BLE001 - a broken plug-in space must not hide the others
            kinds = f"? ({exc.__class__.__name__}: {exc})"
        table.add_row(info.name, info.doc, kinds, ", ".join(p.name for p in list_presets(info.name)) or "-", params)
    console.print(table)
    _plugin_errors(PLUGIN_ERRORS + UNDECLARED)
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from archgraph.core.registry import PLUGIN_ERRORS, UNDECLARED, list_spaces, list_strategies, strategy_handles, support_matrix

    table = Table(title="search strategies")
    for col in ("name", "description", "handles", "options (strategy.KEY, default)"):
        table.add_column(col, overflow="fold")  # every value whole, however narrow the terminal
    for info in list_strategies():
        params = ", ".join(f"{f.name}={_default(f)}" for f in dataclasses.fields(info.params))
        table.add_row(info.name, info.doc, ", ".join(sorted(strategy_handles(info))), params)
    console.print(table)
    spaces = [s.name for s in list_spaces()]
    matrix = Table(title="which strategy runs on which space (yes, or why not)")
    matrix.add_column("strategy \\ space")
    for name in spaces:
        matrix.add_column(name)
    cells: dict[tuple[str, str], str | None] = {(st, sp): reason for st, sp, reason in support_matrix()}
    for info in list_strategies():
        matrix.add_row(info.name, *("yes" if cells[(info.name, sp)] is None else f"no: {cells[(info.name, sp)]}" for sp in spaces))
    console.print(matrix)
    _plugin_errors(PLUGIN_ERRORS + UNDECLARED)
    return 0


def _plugin_errors(errors: list[str]) -> None:
    for message in errors:
        console.print(f"[yellow]warning:[/] {message}")


def cmd_ops(args: argparse.Namespace) -> int:
    from archgraph.core.ops import OPS, UPSAMPLERS
    from archgraph.core.registry import PLUGIN_ERRORS, UNDECLARED, load_plugins

    load_plugins()  # spaces and plug-ins register their ops when their modules are imported
    table = Table(title="ops")
    for col in ("name", "kind", "registered by", "description"):
        table.add_column(col)
    origins = {info.origin: op_origin(info.origin) for info in OPS.values()}
    for info in OPS.values():
        kind = "head" if info.takes_list else ("parameter-free" if info.parameter_free else "conv")
        table.add_row(info.name, kind, origins[info.origin], info.doc)
    console.print(table)
    modes = Table(title="up-sampling modes of alignment branches (node attribute upsample)")
    for col in ("name", "registered by", "description"):
        modes.add_column(col)
    for mode in UPSAMPLERS.values():
        modes.add_row(mode.name, op_origin(mode.origin), mode.doc)
    console.print(modes)
    _plugin_errors(PLUGIN_ERRORS + UNDECLARED)
    return 0


def op_origin(module: str) -> str:
    """Who registered an op, for `archgraph ops`: the package (distribution) that holds ``module``,
    and the spaces that module registers (an op a space brings along), e.g. ``archgraph: space
    autodeeplab`` or ``archgraph-tiny-plugin: spaces tiny_chain, tiny_width``."""
    from importlib.metadata import packages_distributions

    from archgraph.core.registry import SPACES, registered_by

    if not module:
        return "?"
    top = module.split(".")[0]
    package = ", ".join(sorted(set(packages_distributions().get(top, [])))) or top
    if module == "archgraph.core.ops":
        return f"{package} (core)"
    spaces = sorted(name for name, info in SPACES.items() if registered_by(info) == module)
    if spaces:
        return f"{package}: space{'s' if len(spaces) > 1 else ''} {', '.join(spaces)}"
    return f"{package} ({module})"


def _default(f: dataclasses.Field) -> str:
    """A field's default as a user would type it in YAML (``[0.5, 0.999]``, ``false``), not a repr."""
    if f.default is not dataclasses.MISSING:
        return yaml_text(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if isinstance(value, list) and len(value) > 4:
            from archgraph.core.ops import MBCONV_OPS

            return "[6 MobileNetV3 blocks]" if tuple(value) == MBCONV_OPS else f"[{len(value)} ops: {', '.join(map(str, value))}]"
        return yaml_text(value)
    return "?"


def space_summary(graph) -> dict:
    from archgraph.core.choices import discover_choices
    from archgraph.core.compile import compile_graph

    choices = discover_choices(graph)
    connections = sum(1 for _, _, k in graph.edges(data="kind") if k == "candidate")
    net = compile_graph(graph)
    return {
        "space": graph.graph.get("space"),
        "name": graph.graph.get("name"),
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "connections": connections,
        "op_choices": len(choices.ops),
        "input_choices": len(choices.inputs),
        "params": sum(p.numel() for p in net.weight_parameters()),
        "arch_params": sum(p.numel() for p in net.arch_parameters()),
        "hyper_parameters": graph.graph.get("params", {}),
    }


def architecture_summary(graph, crop: tuple[int, int]) -> dict:
    """Size of one graph file: nodes, edges, parameters, and FLOPs of one forward pass at ``crop``
    (torch's flop counter, a multiply-add counted as 2); a graph with choice points is compiled with
    the continuous relaxation (every candidate runs) and also counts its choice points."""
    from archgraph.core.choices import discover_choices
    from archgraph.core.compile import compile_graph
    from archgraph.core.costs import model_flops

    net = compile_graph(graph)
    choices = discover_choices(graph)
    out = {
        "name": graph.graph.get("name"),
        "space": graph.graph.get("space"),
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "num_classes": graph.graph.get("num_classes"),
        "params": sum(p.numel() for p in net.weight_parameters()),
        "flops": model_flops(net, crop),
        "crop": list(crop),
    }
    if len(choices):
        out.update(op_choices=len(choices.ops), input_choices=len(choices.inputs), arch_params=sum(p.numel() for p in net.arch_parameters()))
    return out


def _graph_file(path: Path):
    """The graph in ``path`` (a run folder: its arch.yaml), with the ops of installed plug-ins registered."""
    from archgraph.core.graph import load, validate
    from archgraph.core.ops import check_known_ops

    if path.is_dir():
        if not (path / "arch.yaml").is_file():
            raise ArchgraphError(f"{path} is a folder without arch.yaml; pass an architecture YAML or a search/training run folder")
        path = path / "arch.yaml"
    graph = load(path)
    validate(graph)
    check_known_ops(graph)
    return graph


def cmd_inspect(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.file is not None:
        if args.space:
            raise ArchgraphError("give either FILE or --space, not both")
        crop = tuple(args.crop) if args.crop else tuple(cfg.data.crop)
        if min(crop) < 1:
            raise ArchgraphError(f"--crop {crop[0]} {crop[1]}: both sizes must be at least 1")
        summary = architecture_summary(_graph_file(Path(args.file)), crop)
        title = f"architecture {summary['name']}"
    else:
        summary = space_summary(space_graph(cfg))
        if args.crop:
            from archgraph.core.compile import compile_graph
            from archgraph.core.costs import model_flops

            summary.update(flops=model_flops(compile_graph(space_graph(cfg)), tuple(args.crop)), crop=list(args.crop))
        title = f"space {summary['name']}"
    if args.json:
        print(json.dumps(summary))
        return 0
    table = Table(title=title, show_header=False)
    for k, v in summary.items():
        shown = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
        if k == "flops":
            shown += f" ({v / 1e9:.3g} GFLOPs at {summary['crop'][0]}x{summary['crop'][1]})"
        table.add_row(k, shown)
    console.print(table)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Draw a space's supernet, a preset, a graph file or a run folder's architecture or supernet.

    A space or preset built here must be one a search could run: its graph valid and every op and
    up-sampling mode registered (a space naming a mistyped op is refused, naming the op and the
    closest registered ones, as ``archgraph search`` refuses it). Files are drawn as they are: an
    architecture of a plug-in that is not installed here can still be looked at. A run folder's
    supernet is drawn with its scores and the architecture the run derived (its arch.yaml)."""
    from archgraph.core.graph import load
    from archgraph.outputs.render import render
    from archgraph.runfolder import check_output_file

    check_output_file(Path(args.output), "-o", "picture.svg")
    scores = derived = None
    if args.preset:
        from archgraph.core.spaces_api import build_preset

        if args.file is not None or args.supernet:
            raise ArchgraphError("give either FILE or --preset, not both (and no --supernet: a preset is an architecture)")
        graph = _searchable(build_preset(args.preset, _searchable(space_graph(resolve_config(args)))))
        title = f"preset {args.preset} ({graph.graph.get('name')})"
    elif args.space or args.file is None:
        if args.file is not None:
            raise ArchgraphError("give either FILE or --space, not both")
        graph = _searchable(space_graph(resolve_config(args)))
        title = f"supernet {graph.graph.get('name')}"
    else:
        path = Path(args.file)
        if path.is_dir():
            if args.supernet:
                graph = load(path / "supernet.yaml")
                scores_file = path / "scores.json"
                try:
                    scores = json.loads(scores_file.read_text()) if scores_file.is_file() else None
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ArchgraphError(f"{scores_file} is not valid JSON; draw the supernet without scores by moving it away, or rerun the search") from None
                if scores and (path / "arch.yaml").is_file():
                    try:
                        derived = load(path / "arch.yaml")  # written with scores.json: the edges the run kept, drawn dark
                    except GraphError as exc:
                        print(f"warning: {exc}; the supernet's dark edges are decoded from scores.json instead", file=sys.stderr)
                title = f"supernet of {path.name}"
            else:
                graph = load(path / "arch.yaml")
                title = f"architecture of {path.name}"
        elif path.is_file():
            graph, title = load(path), path.stem
        else:
            raise ArchgraphError(f"{path}: no such file or folder; pass a graph YAML, a run folder, or --space NAME")
    result = render(graph, args.output, scores=scores, title=title, derived=derived)  # prints the missing-Graphviz warning itself
    console.print(f"wrote {result.path}" + "".join(f" and {p}" for p in result.extra))
    return 0


def _searchable(graph):
    """``graph`` (a space's supernet) if a search could compile it: valid, every op and up-sampling
    mode registered; else the one-line error that search would give."""
    from archgraph.core.graph import validate
    from archgraph.core.ops import check_known_ops

    validate(graph)
    check_known_ops(graph)
    return graph


def cmd_sample(args: argparse.Namespace) -> int:
    from archgraph.builders import space_for_training
    from archgraph.core.decode import sample_architecture
    from archgraph.core.graph import graph_hash, save

    # The head is sized for data.* (like a search sizes it) unless space.num_classes is set.
    graph = space_for_training(resolve_config(args))
    arch = sample_architecture(graph, args.seed)
    arch.graph["name"] = f"{graph.graph.get('name')}-random-{args.seed}"
    save(arch, args.output)
    console.print(f"wrote {args.output} ({arch.number_of_nodes()} nodes, {arch.number_of_edges()} edges, hash {graph_hash(arch)})")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    print(cfg.to_yaml(), end="")
    return 0
