"""Read an XML document of repeated record elements into a raw frame of JSON-like records.

Each record element (``<product>``) becomes one object: a child element is a field, named by its
tag, holding its text (an empty element is null), or an object when it has children or
attributes of its own. Attributes are fields named ``@name``; text beside child elements or
attributes is the field ``#text``. Everything stays text: XML carries no types.

Whether a field is a list is decided for the whole file, so every record gets the same shape:
an element is a list when it repeats under one parent anywhere in the file (or its tag is one of
``list_elements``), and an element whose only children are such a list (``<features>`` around
``<feature>``, ``<categoryPath>`` around ``<category>``) is that list itself.

``_line`` is the line of the record's start tag. The document is parsed with expat as a stream
of events into light node trees of the records alone (nothing outside them is kept); DTD entity
declarations are refused, so no entity is expanded and nothing external is ever fetched. A
document that is not well-formed fails as a whole, naming the line; a record element holding no
fields is set aside as malformed.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn
from xml.parsers import expat

import polars as pl

from aisle.errors import InputError
from aisle.ingest.rawframe import LINE, MAX_TEXT, empty_frame, malformed_frame
from aisle.ingest.structured import frame_of_objects

ATTRIBUTE_PREFIX = "@"
TEXT_FIELD = "#text"

#: Deepest nesting read; records are a few levels deep, and the readers recurse.
MAX_DEPTH = 100

Path = tuple[str, ...]
_NO_CHILDREN: list[tuple[str, _Node]] = []  # shared, never appended to
_BROKEN_HINT = "the document is not well-formed XML; fix or re-export it"


class _Node:
    """One element of a record: its attributes, its child elements in order, its text."""

    __slots__ = ("attrs", "children", "text")

    def __init__(self, attrs: dict[str, str]) -> None:
        self.attrs = attrs
        self.children: list[tuple[str, _Node]] = _NO_CHILDREN  # a list of its own once it has one
        self.text = ""


@dataclass(slots=True)
class _Record:
    tag: str
    line: int
    start: int  # byte offsets of the element in the document, for a malformed record's text
    end: int
    node: _Node


class _Collector:
    """expat handlers: record elements as node trees, with their lines and byte spans."""

    def __init__(self, data: bytes, source: str, record_element: str | None) -> None:
        self.data = data
        self.source = source
        self.record_element = record_element
        self.records: list[_Record] = []
        self.root: str | None = None
        self.root_children: Counter[str] = Counter()
        self._depth = 0
        self._stack: list[_Node] = []  # the open elements of the current record
        self._line = 0
        self._start = 0
        parser = expat.ParserCreate(encoding="utf-8")  # read_source hands over UTF-8
        parser.buffer_text = True
        parser.buffer_size = 1 << 16
        parser.StartElementHandler = self._open
        parser.EndElementHandler = self._close
        parser.CharacterDataHandler = self._characters
        parser.EntityDeclHandler = self._refuse_entity
        parser.ExternalEntityRefHandler = self._refuse_external
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self.parser = parser

    def parse(self) -> None:
        try:
            self.parser.Parse(self.data, True)
        except expat.ExpatError as exc:
            message = expat.errors.messages[exc.code]
            raise InputError(
                f"invalid XML: {message} (column {exc.offset + 1})",
                source=self.source,
                line=exc.lineno,
                hint=_BROKEN_HINT,
            ) from None

    def _open(self, tag: str, attrs: dict[str, str]) -> None:
        depth = self._depth
        if depth >= MAX_DEPTH:
            raise InputError(
                f"elements nest deeper than {MAX_DEPTH} levels",
                source=self.source,
                line=self.parser.CurrentLineNumber,
            )
        self._depth = depth + 1
        if depth == 0:
            self.root = tag
        elif depth == 1:
            self.root_children[tag] += 1
        if self._stack:
            node = _Node(attrs)
            parent = self._stack[-1]
            if parent.children is _NO_CHILDREN:
                parent.children = [(tag, node)]
            else:
                parent.children.append((tag, node))
            self._stack.append(node)
        elif (depth == 1) if self.record_element is None else (tag == self.record_element):
            self._line = self.parser.CurrentLineNumber
            self._start = self.parser.CurrentByteIndex
            self._stack.append(_Node(attrs))

    def _close(self, tag: str) -> None:
        self._depth -= 1
        if not self._stack:
            return
        node = self._stack.pop()
        if not self._stack:  # the record is complete
            closing = self.data.find(b">", self.parser.CurrentByteIndex)
            end = len(self.data) if closing < 0 else closing + 1
            self.records.append(_Record(tag, self._line, self._start, end, node))

    def _characters(self, text: str) -> None:
        if self._stack:
            self._stack[-1].text += text

    def _refuse_entity(self, name: str, *_args: Any) -> NoReturn:
        raise InputError(
            f"the document declares the entity {name!r}; entity declarations are not read",
            source=self.source,
            line=self.parser.CurrentLineNumber,
            hint="export the XML without a DTD that declares entities",
        )

    def _refuse_external(self, *_args: Any) -> NoReturn:
        raise InputError(
            "the document refers to an external entity, which is not fetched",
            source=self.source,
            line=self.parser.CurrentLineNumber,
        )


@dataclass
class _Shape:
    """What the whole file says of each element path below the record element."""

    repeated: set[Path]  # paths that occur more than once under one parent somewhere
    list_elements: frozenset[str]
    wrappers: dict[Path, str]  # path -> the tag of the list it only wraps

    def is_list(self, path: Path) -> bool:
        return path in self.repeated or path[-1] in self.list_elements


def _shape(nodes: list[_Node], list_elements: frozenset[str]) -> _Shape:
    repeated: set[Path] = set()
    child_tags: dict[Path, set[str]] = {}
    not_wrappers: set[Path] = set()  # paths with attributes or text somewhere

    def visit(node: _Node, path: Path) -> None:
        if node.attrs or (node.text and not node.text.isspace()):
            not_wrappers.add(path)
        children = node.children
        if not children:
            return
        tags = [tag for tag, _ in children]
        distinct = set(tags)
        known = child_tags.get(path)
        if known is None:
            child_tags[path] = distinct
        else:
            known |= distinct
        if len(distinct) < len(tags):
            repeated.update((*path, tag) for tag, n in Counter(tags).items() if n > 1)
        for tag, child in children:
            visit(child, (*path, tag))

    for node in nodes:
        visit(node, ())
    shape = _Shape(repeated, list_elements, {})
    for path, tags in child_tags.items():
        if path and path not in not_wrappers and len(tags) == 1:
            (tag,) = tags
            if shape.is_list((*path, tag)):
                shape.wrappers[path] = tag
    return shape


def _value(node: _Node, path: Path, shape: _Shape) -> Any:
    """The JSON-like value of an element: text or null, an object, or a list it wraps."""
    item = shape.wrappers.get(path)
    if item is not None:
        return [_value(child, (*path, item), shape) for _, child in node.children]
    if not node.children and not node.attrs:
        return node.text or None
    obj: dict[str, Any] = {ATTRIBUTE_PREFIX + k: v for k, v in node.attrs.items()}
    for tag, child in node.children:
        child_path = (*path, tag)
        value = _value(child, child_path, shape)
        if shape.is_list(child_path):
            obj.setdefault(tag, []).append(value)
        else:
            obj[tag] = value
    text = node.text
    if node.children:
        text = text.strip()
    if text:
        obj[TEXT_FIELD] = text
    return obj


@contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while the node trees grow: they hold no cycles, and the
    collector's passes over ever more live objects would take half the reading time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_xml(
    data: bytes,
    source: str,
    *,
    record_element: str | None = None,
    list_elements: tuple[str, ...] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """UTF-8 XML: one row per record element, the root's children when ``record_element`` is
    None. A root child of another tag than most is set aside as malformed, as is a record
    element without fields (no child elements, no attributes)."""
    collector = _Collector(data, source, record_element)
    with _collection_paused():
        collector.parse()
    records = collector.records
    if record_element is None and collector.root_children:
        expected = collector.root_children.most_common(1)[0][0]
    else:
        expected = record_element or ""
    if record_element is not None and not records and collector.root_children:
        found = ", ".join(f"<{t}>" for t in collector.root_children)
        raise InputError(
            f"no <{record_element}> elements; the root <{collector.root}> holds {found}",
            source=source,
            hint="check the file is the expected export",
        )
    good: list[_Record] = []
    bad: list[tuple[int, str, str]] = []
    for record in records:
        node = record.node
        if record.tag != expected:
            error = f"expected a <{expected}> element, found <{record.tag}>"
        elif not node.children and not node.attrs:
            error = f"the <{record.tag}> element holds no fields (no child elements)"
        else:
            good.append(record)
            continue
        text = data[record.start : record.end][: MAX_TEXT * 4].decode("utf-8", errors="replace")
        bad.append((record.line, error, text[:MAX_TEXT]))
    if not good:
        return empty_frame(()), malformed_frame(bad)
    with _collection_paused():
        shape = _shape([r.node for r in good], frozenset(list_elements))
        objects = [_value(r.node, (), shape) for r in good]
    frame = frame_of_objects(objects, [r.line for r in good], source)
    in_document_order = dict.fromkeys(name for obj in objects for name in obj)
    return frame.select(*in_document_order, LINE), malformed_frame(bad)
