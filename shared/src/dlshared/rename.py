"""`capstones fork PROJECT DEST --name NEW`: the forked project's package and command renamed from OLD to NEW.

The rename is syntactic, by the rules below, so that what it touches can be reviewed (`git diff` in the fork):

- the package folder src/OLD/ becomes src/NEW/; pyproject.toml's [project] name and its [project.scripts] entry
  (NEW = "NEW.cli:main");
- in every .py file outside shared/ (dlshared names no project): imports (`import OLD.x`, `from OLD.x import y`),
  and `OLD.x` attribute chains in a file that does `import OLD...` without `as`;
- in their string literals: the string "OLD" itself where it names the package, the command or the runs folder (the
  value of an upper-case constant such as PROJECT = "OLD", a positional argument of a plain function call such as
  run_cli("OLD", ...), latest_run("OLD", ...) or torchrun("OLD", ...), a segment of a `/` path such as
  tmp_path / "OLD" / "run"), and within any string the TEXT rules;
- TEXT rules, for strings and for the Markdown files outside shared/ (the README): commands (`uv run OLD`,
  `OLD VERB` for the verbs of OLD's cli.py, `OLD <verb>`, `capstones sweep OLD`, `OLD` alone in backticks), module
  paths of OLD's own modules ("OLD.train:train", `-m OLD.cli`, `from OLD.x import`), the folders named after it
  (runs/OLD/, runs/OLD-profile/, OUT/OLD/, ~/.cache/OLD) and src/OLD/ links.

What stays: OLD as a word (prose such as "an image classifier", a page title), inside other words (`classifiers`,
`self.classifier`, "classifier-examples-"), as data (a dict key or value, a comparison, a tuple item: diffusion's run
kind "diffusion", timm's "classifier" config key, Planetoid's "graph" file), in comments, and the workspace's paths
(projects/OLD/...; in Markdown, `fork_markdown` rewrites those for the fork's layout). A test that spells the runs folder another way (a tuple, a conditional) needs a hand edit.
"""

from __future__ import annotations

import ast
import importlib.metadata
import io
import keyword
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import tomlkit

from .cli import UserError

NAME = re.compile(r"[a-z][a-z0-9_]*")  # one spelling for the import name, the distribution and the command
SKIP_FOLDERS = {"shared", ".venv", "runs"}


def check_name(new: str) -> None:
    """Refuse a NEW that is no lowercase Python package name, or that would shadow a module the fork imports."""
    if not NAME.fullmatch(new):
        raise UserError(f"--name {new!r}: use lowercase letters, digits and _, starting with a letter")
    if keyword.iskeyword(new) or keyword.issoftkeyword(new):
        raise UserError(f"--name {new!r} is a Python keyword; choose another name")
    if new == "dlshared" or new in sys.stdlib_module_names:
        taken_by = "dlshared, which the fork imports" if new == "dlshared" else "a standard-library module"
        raise UserError(f"--name {new!r} is taken by {taken_by}; choose another name")
    # The modules installed here (torch, sklearn, PIL...) are the fork's dependencies too. The workspace's projects
    # are installed editable, which lists no modules: their names stay free (a fork holds only its own project).
    if owners := importlib.metadata.packages_distributions().get(new):
        raise UserError(f"--name {new!r} is taken by a module that {owners[0]} installs; choose another name")


def rename_project(tree: Path, old: str, new: str) -> None:
    """Rename the package `old` of the forked project at `tree` to `new`, by the rules of this module's docstring."""
    (tree / "src" / old).rename(tree / "src" / new)
    text_rules = TextRules(old, new, _modules(tree / "src" / new), _verbs(tree / "src" / new / "cli.py"))
    for path in _files(tree, "*.py"):
        _rewrite(path, lambda source: rename_python(source, old, new, text_rules))
    for path in _files(tree, "*.md"):
        _rewrite(path, text_rules.sub)
    _rewrite(tree / "pyproject.toml", lambda text: rename_pyproject(text, old, new))


class TextRules:
    """The references to `old` that a string or a Markdown file may hold (see the module docstring): one regex."""

    def __init__(self, old: str, new: str, modules: Iterable[str] = (), verbs: Iterable[str] = ()):
        alone = r"(?![\w\-])"  # not the start of a longer word, name-with-dash or path segment
        free = r"(?<![\w.\-/])"  # not the end of one
        rules = [
            rf"(?<=\buv run ){old}{alone}",
            rf"(?<=\bcapstones sweep ){old}{alone}",
            rf"(?<=`){old}(?=`)",  # `OLD` alone in backticks: the package or the command
            rf"(?<=(?<![\w.\-])runs/){old}(?:{alone}|(?=-profile\b))",  # dlshared.profiling's OLD-profile too
            rf"(?<=(?<![\w.\-])OUT/){old}{alone}",
            rf"(?<=\.cache/){old}{alone}",  # ~/.cache/OLD, where Path.home() / ".cache" / "OLD" (renamed) writes
            rf"(?<=(?<![\w./\-])src/){old}(?=/)",
            rf"(?<=\bimport ){old}(?=$|[\s,;]|\.\w)",
            rf"(?<=\bfrom ){old}(?=(?:\.\w+)* import\b)",
        ]
        if modules := sorted(modules, key=len, reverse=True):
            rules.append(rf"{free}{old}(?=\.(?:{'|'.join(map(re.escape, modules))})\b)")
        verbs = [*map(re.escape, sorted(verbs, key=len, reverse=True)), r"<[\w-]+>"]  # `OLD <verb> --help` too
        rules.append(rf"{free}{old}(?= (?:{'|'.join(verbs)}){alone})")
        self.pattern, self.new = re.compile("|".join(rules), re.M), new

    def sub(self, text: str) -> str:
        return self.pattern.sub(self.new, text)


def rename_python(source: str, old: str, new: str, text_rules: TextRules) -> str:
    """`source` with its imports of `old`, the module references and the strings that name it renamed to `new`."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    # Python 3.11 gives the parts of an f-string no positions of their own: an f-string is edited as one text.
    fstrings = [node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
    in_fstrings = {part for node in fstrings for part in ast.walk(node) if part is not node}
    imports_old = any(
        alias.asname is None and alias.name.split(".")[0] == old
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    )
    lines = io.StringIO(source, newline="").readlines()  # the lines ast numbers (str.splitlines also splits on \f)
    edits = []  # (first character, end character, replacement)

    def span(node: ast.AST) -> tuple[int, int]:
        return _offset(lines, node.lineno, node.col_offset), _offset(lines, node.end_lineno, node.end_col_offset)

    for node in ast.walk(tree):
        if node in in_fstrings:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == old:
                    start = _offset(lines, alias.lineno, alias.col_offset)
                    edits.append((start, start + len(old), new))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == old:
            start = span(node)[0]
            start += re.match(r"from\s+", source[start:]).end()
            edits.append((start, start + len(old), new))
        elif isinstance(node, ast.Name) and node.id == old and imports_old:
            edits.append((*span(node), new))
        elif isinstance(node, ast.Constant) and node.value == old and _names_the_project(node, parents[node]):
            start, end = span(node)
            edits.append((start, end, source[start:end].replace(old, new)))
        elif isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            start, end = span(node)
            if (renamed := text_rules.sub(source[start:end])) != source[start:end]:
                edits.append((start, end, renamed))
    for start, end, text in sorted(edits, reverse=True):  # from the end, so earlier offsets stay valid
        source = source[:start] + text + source[end:]
    return source


def rename_pyproject(text: str, old: str, new: str) -> str:
    """[project] name, and the command: the scripts entry named `old` (or pointing into it) now `new`."""
    doc = tomlkit.parse(text)
    project = doc["project"]
    project["name"] = new
    if "scripts" in project:
        scripts = tomlkit.table()
        for command, target in project["scripts"].items():
            command = new if command == old else command
            scripts[command] = re.sub(rf"^{old}(?=[.:])", new, str(target))
        project["scripts"] = scripts
    return tomlkit.dumps(doc)


def _names_the_project(node: ast.Constant, parent: ast.AST) -> bool:
    """Is the string "OLD" at `node` the package, command or runs folder (not data that happens to match)?"""
    if isinstance(parent, ast.Assign | ast.AnnAssign):  # PROJECT = "OLD"
        targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
        return all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)
    if isinstance(parent, ast.Call):  # run_cli("OLD", ...), but not card.get("OLD")
        return isinstance(parent.func, ast.Name) and node in parent.args
    return isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div)  # runs / "OLD" / name


def _modules(package: Path) -> set[str]:
    return {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}


def _verbs(cli: Path) -> set[str]:
    """The verbs of the command: the string keys of dicts whose values are `Command(...)` calls in its cli.py."""
    if not cli.is_file():
        return set()
    return {
        key.value
        for node in ast.walk(ast.parse(cli.read_text(encoding="utf-8")))
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values, strict=True)
        if isinstance(key, ast.Constant) and isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Command"
    }


def _files(tree: Path, pattern: str) -> list[Path]:
    return [p for p in tree.rglob(pattern) if not SKIP_FOLDERS & set(p.relative_to(tree).parts[:1])]


def _rewrite(path: Path, change) -> None:
    text = path.read_text(encoding="utf-8")
    if (changed := change(text)) != text:
        path.write_text(changed, encoding="utf-8")


def _offset(lines: list[str], lineno: int, col_offset: int) -> int:
    """ast's (line, UTF-8 byte column) as a character offset into the source."""
    before = sum(len(line) for line in lines[: lineno - 1])
    return before + len(lines[lineno - 1].encode("utf-8")[:col_offset].decode("utf-8"))
