"""A griffe extension for the API reference (mkdocs.yml): npctr's numpydoc docstrings use a few
reStructuredText constructs that Markdown does not know. Rewritten, in the docstrings griffe hands
to mkdocstrings (the source files are not touched):

- ``:math:`x``` -> ``$x$`` and a ``.. math::`` directive -> a ``$$ ... $$`` block (rendered by KaTeX
  at build time, see tools/docs_hooks.py);
- ``:func:`~a.b```, ``:class:``, ``:meth:``, ... -> the code span ```a.b``` (``~`` dropped);
- an RST simple table (``====  ====`` rules) -> a Markdown table.
"""
import re

import griffe

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_OTHER_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|ref|py:\w+):`~?([^`]+)`")
_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _math_directives(lines):
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        match = re.match(r"^(\s*)\.\. math::\s*(.*)$", line)
        if not match:
            out.append(line)
            i += 1
            continue
        indent, first = len(match.group(1)), match.group(2).strip()
        body = [first] if first else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i].strip())
            i += 1
        body = [b for b in body if b]
        pad = " " * indent
        out += ["", pad + "$$", *(pad + b for b in body), pad + "$$", ""]
    return out


def _tables(lines):
    """RST simple tables -> Markdown tables (columns cut at the rule's gaps)."""
    out, i = [], 0
    while i < len(lines):
        if not _RULE.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        rule = lines[i]
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]
        rows, j = [], i + 1
        while j < len(lines) and lines[j].strip():
            if not _RULE.match(lines[j]):
                line = lines[j]
                cells = []
                for k, (start, _) in enumerate(spans):
                    end = spans[k + 1][0] if k + 1 < len(spans) else len(line)
                    cells.append(line[start:end].strip())
                rows.append(cells)
            j += 1
        # the closing rule ends the table; a rule inside separates the header
        if j < len(lines) or rows:
            if rows:
                out.append("| " + " | ".join(rows[0]) + " |")
                out.append("|" + "---|" * len(spans))
                out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
            i = j
        else:
            out.append(rule)
            i += 1
    return out


def rst_to_markdown(text):
    lines = _tables(_math_directives(text.split("\n")))
    text = "\n".join(lines)
    text = _MATH_ROLE.sub(lambda m: "$" + m.group(1).strip() + "$", text)
    return _OTHER_ROLE.sub(lambda m: "`" + m.group(1) + "`", text)


class RstToMarkdown(griffe.Extension):
    def on_object(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
