"""Parse JSON or (multi-document) YAML config input within fixed limits, or fail fast.

Input to `knd config validate` is hostile: a 50 MB file, 100 000 nested brackets or a YAML
"billion laughs" (anchors of anchors) must end in a clear `DocumentError`, in bounded time and
memory, never a traceback. The limits, and why:

* `MAX_INPUT_BYTES` = 3 MiB: the API server refuses any request body above 3 MiB
  (`MaxRequestBodyBytes`), and stores objects of at most 1.5 MiB (etcd's request limit). The
  file limit is the request limit rather than the object one because a file may hold several
  objects (`List`, multi-document YAML) and YAML formatting is larger than the stored JSON;
  anything over 3 MiB could not be sent to the API server in one request at all.
* `MAX_DEPTH` = 100 nested collections: a ResourceClaimTemplate with a config is about 12 deep,
  a bare config at most 5. Python's own recursion limit (1000) is never approached.
* `MAX_NODES` = 2**17 YAML nodes per input, counted after alias expansion: a config's opaque
  parameters are at most 10 KiB (a few hundred nodes), so this is room for hundreds of claim
  templates in one file, while it keeps the parsed tree under ~60 MB (a 3 MiB file of one-byte
  scalars would otherwise compose 800 000 nodes and 400 MB). Anchors that expand past it
  (exponentially nested aliases) are refused before anything walks the expanded tree, and a
  recursive alias (`&a [*a]`) is refused too. JSON has no aliases and parses ~20x leaner, so
  only the byte and depth limits apply to it.

YAML is read in two passes of libyaml (when present; else PyYAML's pure parser): events first
(depth, no tree built), then nodes (expansion counted over the shared node graph, linear in the
input), then Python objects. JSON is parsed by the standard library; deep nesting is caught.
Cost: about 1 s per MiB of YAML, less for JSON.
"""

from __future__ import annotations

import json
from typing import Any, Final

import yaml

MAX_INPUT_BYTES: Final = 3 * 1024 * 1024
MAX_DEPTH: Final = 100
MAX_NODES: Final = 2**17

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
_NODE = (yaml.ScalarEvent, yaml.AliasEvent, *_OPEN)


class DocumentError(ValueError):
    """Input that cannot be parsed within the limits; the message says which and where."""


def check_size(size: int, name: str) -> None:
    if size > MAX_INPUT_BYTES:
        raise DocumentError(
            f"{name}: {size} bytes is over the {MAX_INPUT_BYTES}-byte limit "
            "(the API server's request size limit)"
        )


def parse_documents(data: bytes, name: str, *, json_only: bool = False) -> list[object]:
    """All non-empty documents in `data` (JSON, or YAML unless `json_only`)."""
    check_size(len(data), name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{name}: not UTF-8: {exc}") from exc
    if json_only:
        return [_json(text, name)]
    return _yaml(text, name)


def _json(text: str, name: str) -> object:
    try:
        doc: object = json.loads(text)
    except RecursionError as exc:
        raise DocumentError(f"{name}: nested more than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        raise DocumentError(f"{name}: cannot parse: {exc}") from exc
    _check_json_depth(doc, name)
    return doc


def _check_json_depth(doc: object, name: str) -> None:
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, dict | list):
            if depth > MAX_DEPTH:
                raise DocumentError(f"{name}: nested more than {MAX_DEPTH} levels")
            children = obj.values() if isinstance(obj, dict) else obj
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def _yaml(text: str, name: str) -> list[object]:
    try:
        _check_event_depth(text, name)
        loader = _Loader(text)
        try:
            docs: list[object] = []
            while loader.check_node():
                node = loader.get_node()
                _check_expansion(node, name)
                doc = loader.construct_document(node)
                if doc is not None:
                    docs.append(doc)
            return docs
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise DocumentError(f"{name}: cannot parse: {exc}") from exc
    except RecursionError as exc:  # defence in depth: the depth check runs first
        raise DocumentError(f"{name}: nested more than {MAX_DEPTH} levels") from exc


def _check_event_depth(text: str, name: str) -> None:
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, _NODE):
            nodes += 1
            if nodes > MAX_NODES:
                raise DocumentError(f"{name}: more than {MAX_NODES} YAML nodes")
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                where = f" (line {mark.line + 1})" if mark is not None else ""
                raise DocumentError(f"{name}: nested more than {MAX_DEPTH} levels{where}")
        elif isinstance(event, _CLOSE):
            depth -= 1


def _check_expansion(root: yaml.Node, name: str) -> None:
    """Count nodes as if every alias were expanded, visiting each shared node once."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk; `open_` holds nodes whose children are being counted.
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_NODES:
                raise DocumentError(
                    f"{name}: expands to more than {MAX_NODES} nodes (aliases of aliases)"
                )
            continue
        if key in sizes:
            continue
        if key in open_:
            raise DocumentError(f"{name}: recursive alias")
        if depth > MAX_DEPTH:
            raise DocumentError(f"{name}: nested more than {MAX_DEPTH} levels (via aliases)")
        open_.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) in open_:
                raise DocumentError(f"{name}: recursive alias")
            if id(child) not in sizes:
                stack.append((child, depth + 1, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
