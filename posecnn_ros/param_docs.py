"""config/posecnn.yaml and the parameter table of docs/node.md, generated from `params.SPECS`.

`python tools/gen_param_docs.py` rewrites both; test/test_node_units.py checks that they are current.
"""

from __future__ import annotations

import json

from posecnn_ros.params import SPECS, ParamSpec

DOCS_BEGIN = "<!-- parameters: generated from posecnn_ros/params.py by tools/gen_param_docs.py -->"
DOCS_END = "<!-- end of parameters -->"

YAML_HEADER = """\
# Parameters of the posecnn node (node name `posecnn`), every one with its default.
#   ros2 run posecnn_ros posecnn_node --ros-args --params-file config/posecnn.yaml
#   ros2 launch posecnn_ros posecnn.launch.py params_file:=<this file>
# Read-only parameters are fixed at start-up; the others can be changed at run time
# (`ros2 param set /posecnn <name> <value>`) and are validated: ranges in brackets.
# Generated from posecnn_ros/params.py by tools/gen_param_docs.py. A name the node does not declare is
# reported at start-up with a warning naming the closest parameter, and otherwise ignored.
"""


def _value(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _comment(spec: ParamSpec) -> str:
    allowed = spec.allowed()
    if spec.low is not None:
        allowed = f" {allowed}"
    elif allowed:
        allowed = f" ({allowed})"
    return spec.description + allowed + ("; read-only" if spec.read_only else "")


def yaml_text() -> str:
    """config/posecnn.yaml: every parameter with its default and a comment (description, allowed values);
    dotted names are nested (voting.skip_pixels -> voting: skip_pixels:), each group where its first member is."""
    groups: dict[str, list[ParamSpec]] = {}
    for spec in SPECS:
        groups.setdefault(spec.name.split(".")[0] if "." in spec.name else spec.name, []).append(spec)
    lines = [YAML_HEADER.rstrip("\n"), "/**:", "  ros__parameters:"]
    for key, members in groups.items():
        if "." not in members[0].name:
            spec = members[0]
            lines += [f"    # {_comment(spec)}", f"    {spec.name}: {_value(spec.default)}"]
            continue
        lines.append(f"    {key}:")
        for spec in members:
            lines += [f"      # {_comment(spec)}", f"      {spec.name.split('.', 1)[1]}: {_value(spec.default)}"]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def markdown_table() -> str:
    """The parameter table of docs/node.md (between DOCS_BEGIN and DOCS_END)."""
    rows = ["| parameter | type | default | allowed | run-time | sets | description |",
            "|---|---|---|---|:---:|---|---|"]
    for spec in SPECS:
        sets = f"`EstimatorConfig.{spec.config}`" if spec.config else "node"
        rows.append(f"| `{spec.name}` | {spec.kind.__name__} | `{_value(spec.default)}` | {_cell(spec.allowed())} | "
                    f"{'' if spec.read_only else 'yes'} | {sets} | {_cell(spec.description)} |")
    return "\n".join(rows) + "\n"


def docs_with_table(text: str) -> str:
    """`text` (docs/node.md) with the table between the markers replaced; ValueError without the markers."""
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise ValueError(f"the markers {DOCS_BEGIN!r} and {DOCS_END!r} are missing")
    head, rest = text.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    return f"{head}{DOCS_BEGIN}\n{markdown_table()}{DOCS_END}{tail}"
