"""Reading and running the shell sessions of README.md and docs/*.md.

Used by tests/test_doc_examples.py, whose docstring says what a session is,
how it is run and what is masked. This module has the parts: `sessions()`
finds the sessions of a document, `Shell` runs commands in one bash process,
and `Expected` compares an output with a session's printed lines.
"""
import dataclasses
import difflib
from functools import reduce
import os
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PRELUDE_ENDS = "calls import examples/calls.jsonl"
DOC_BASE = "http://127.0.0.1:8000"
ELLIPSIS = "…"

# <!-- doc-test: skip (why) --> right before a block: not run, and it says why.
SKIP = re.compile(r"<!--\s*doc-test:\s*skip\b(.*?)-->")

# What differs from one run to the next. A value the document shows for one
# of these matches any value of its kind, and stands for that value from then
# on: in later outputs (the same document value must be the same run value)
# and in later commands (`KEY=usk_…` pasted from an earlier output).
MASKS = {
    "an API key": r"usk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}",
    "a webhook secret": r"whsec_[A-Za-z0-9+/]{43}=",
    "a time of the run": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00",
    "an ETag": r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])",
    "a request or event id": r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])",
    "a key or webhook id": r"(?<![0-9a-f])[0-9a-f]{16}(?![0-9a-f])",
}
MASK = re.compile("|".join(f"(?P<m{i}>{pattern})" for i, pattern in enumerate(MASKS.values())))
KINDS = list(MASKS)
# Lines the CLI writes on standard error about itself, not about the command.
NOISE = re.compile(r"^Using database .*$\n?", re.M)


@dataclasses.dataclass
class Command:
    text: str  # the command as bash reads it (continuation lines joined with their newlines)
    expected: list  # the lines printed after it in the document
    line: int  # where it starts in the document (1-based)
    output_line: int = 0  # where its printed lines start (0-based index of the file's lines)
    indent: str = ""  # the block's indentation


@dataclasses.dataclass
class Session:
    path: Path
    line: int
    commands: list
    skip: str | None  # the reason of a skip marker, or None: run it

    def __str__(self):
        return f"{shown(self.path)}:{self.line}"


def shown(path):
    """`path` from the repository's folder, if it is in it."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def sessions(path):
    """The sessions of the Markdown file `path`, in order: code blocks (indented
    or fenced) whose first line starts with `$ `."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    found, i = [], 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(\s*)```", line)
        indented = re.match(r"^( {4,})\$ ", line)
        if fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")), len(lines))
            body = [text[len(fence.group(1)):] for text in lines[i + 1:end]]
            if body and body[0].startswith("$ "):
                found.append(_session(path, lines, i + 1, body, fence.group(1)))
            i = end + 1
        elif indented and (i == 0 or not lines[i - 1].strip()):
            indent, j = len(indented.group(1)), i + 1
            while j < len(lines):
                if lines[j].strip() and len(lines[j]) - len(lines[j].lstrip(" ")) >= indent:
                    j += 1
                    continue
                following = next((k for k in range(j, len(lines)) if lines[k].strip()), None)
                if lines[j].strip() or following is None or (
                        len(lines[following]) - len(lines[following].lstrip(" ")) < indent):
                    break
                j += 1
            while not lines[j - 1].strip():
                j -= 1
            found.append(_session(path, lines, i, [text[indent:] for text in lines[i:j]], " " * indent))
            i = j
        else:
            i += 1
    return found


def _session(path, lines, start, body, indent=""):
    """The session whose block starts at index `start` (0-based) with `body`."""
    before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
    marker = SKIP.search(before)
    skip = None
    if marker:
        skip = marker.group(1).strip(" :()")
        if not skip:
            raise ValueError(f"{path}:{start}: a skip marker must say why: <!-- doc-test: skip (why) -->")
    commands, k = [], 0
    while k < len(body):
        if not body[k].startswith("$ "):
            raise ValueError(f"{path}:{start + k + 1}: output before any command: {body[k]!r}")
        text, first = body[k][2:], k
        while text.endswith("\\") and k + 1 < len(body):
            k += 1
            text += "\n" + body[k]
        k += 1
        expected = []
        while k < len(body) and not body[k].startswith("$ "):
            expected.append(body[k])
            k += 1
        commands.append(Command(text, expected, start + first + 1, start + k - len(expected), indent))
    return Session(Path(path), start + 1, commands, skip)


def normalize(text):
    """Line ends, trailing spaces and trailing blank lines do not count."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


class Expected:
    """A command's printed output in a document, as a pattern: literal text,
    masked values, and `…` (any text within a line; a line of its own: any
    number of lines)."""

    def __init__(self, lines, values):
        self.tokens = []  # the document's values of the pattern's groups, in order
        parts = []
        for line in normalize("\n".join(lines)).split("\n")[:-1]:
            if line.strip() == ELLIPSIS:
                parts.append(r"(?:[^\n]*\n)*?")
                continue
            part, position = "", 0
            for match in MASK.finditer(line):
                part += self._literal(line[position:match.start()])
                token = match.group(0)
                if token in values:
                    part += re.escape(values[token])
                else:
                    kind = KINDS[int(match.lastgroup[1:])]
                    part += f"({MASKS[kind]})"
                    self.tokens.append((token, kind))
                position = match.end()
            parts.append(part + self._literal(line[position:]) + "\n")
        self.pattern = re.compile("".join(parts))

    @staticmethod
    def _literal(text):
        return r"[^\n]*?".join(re.escape(piece) for piece in text.split(ELLIPSIS))

    def match(self, actual, values):
        """None if `actual` matches, learning the run's values into `values`;
        else what is wrong."""
        found = self.pattern.fullmatch(actual)
        if found is None:
            return "the output differs"
        learned = {}
        for (token, kind), value in zip(self.tokens, found.groups()):
            known = learned.get(token, values.get(token))
            if known is not None and known != value:
                return f"{kind} shown as {token} is {value} here, but was {known} before"
            taken = [doc for doc, run in {**values, **learned}.items() if run == value and doc != token]
            if taken:
                return f"{kind} {value} stands for both {taken[0]} and {token} in the document"
            learned[token] = value
            if kind == "an API key":  # the key id inside the key is the key's id
                learned.setdefault(token.split("_")[1], value.split("_")[1])
        values.update(learned)
        return None


def substitute(command, values):
    """`command` with the document's values replaced by this run's."""
    return MASK.sub(lambda match: values.get(match.group(0), match.group(0)), command)


class Shell:
    """One bash process: variables set by one command are there for the next."""

    def __init__(self, cwd, env, base):
        self.cwd, self.base = Path(cwd), base
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.count = 0

    def run(self, command, timeout=60):
        """Runs `command` (standard error joined to its output) and returns its output."""
        self.count += 1
        output = self.cwd / f".doc-test-{self.count}.out"
        command = command.replace(DOC_BASE, self.base)
        self.process.stdin.write(f"{{ {command}\n}} >{output} 2>&1 </dev/null; echo __doc_test_done__ $?\n")
        self.process.stdin.flush()
        deadline, seen = time.monotonic() + timeout, ""
        while "__doc_test_done__" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                raise TimeoutError(f"no end after {timeout} s: {command}")
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"bash ended: {seen}")
            seen += line
        text = output.read_text(encoding="utf-8", errors="replace")
        output.unlink()
        port = self.base.rsplit(":", 1)[1]
        text = text.replace(self.base, DOC_BASE).replace(f"127.0.0.1:{port}", "127.0.0.1:8000")
        return normalize(NOISE.sub("", text))

    def variables(self, names):
        """The values of the shell variables `names`."""
        values = {}
        for name in names:
            values[name] = self.run(f'printf "%s\\n" "${name}"').rstrip("\n")
        return values

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=10)


def run_session(shell, session, values, outputs=None):
    """Runs every command of `session`; returns a failure message, or None.
    With `outputs` (a dict), the output of every command that failed goes in
    it, and a failure does not end the session."""
    failure = None
    for command in session.commands:
        actual = shell.run(substitute(command.text, values))
        expected = Expected(command.expected, values)
        problem = expected.match(actual, values)
        if outputs is not None and problem:  # as the document would show it: its values for those it learned
            outputs[id(command)] = reduce(lambda text, pair: text.replace(pair[1], pair[0]), values.items(), actual)
        if problem and failure is None:
            want = normalize("\n".join(command.expected))
            diff = "".join(difflib.unified_diff(
                want.splitlines(True), actual.splitlines(True), "document", "this run"))
            failure = (f"{shown(session.path)}:{command.line}: {problem}\n"
                       f"$ {command.text}\n{diff or actual}")
            if outputs is None:
                return failure
    return failure


def assigned(session):
    """Names of the shell variables the session's commands assign (`$ NAME=…`)."""
    return [match.group(1) for command in session.commands
            for match in [re.match(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", command.text)] if match]


def workspace(folder):
    """A folder to run the documents' commands in, as if it were the repository's:
    `.venv`, `examples` and `wsgi.py` are links to the repository's, and
    `instance/` is its own."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (".venv", "examples", "wsgi.py"):
        (folder / name).symlink_to(ROOT / name)
    (folder / "instance").mkdir()
    return folder


def environment(database_url, base):
    env = {**os.environ, "DATABASE_URL": database_url, "URL": base}
    for name in ("TEST_DATABASE_URL", "REDIS_URL", "RETENTION_DAYS", "PYTHONPATH"):
        env.pop(name, None)
    return env


def migrated(folder):
    """A SQLite database in `folder`'s instance/, migrated by `flask db upgrade`."""
    database = Path(folder) / "instance" / "usage.db"
    subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "db", "upgrade"], cwd=folder,
                   check=True, env=environment(f"sqlite:///{database}", ""), capture_output=True)
    return database


def run_document(folder, database, found, variables=None, values=None, outputs=None):
    """Runs the sessions `found` (skipping those marked) against gunicorn on
    `database`, from a shell started with `variables`, learning `values`;
    returns (failures, the shell's variables afterwards)."""
    from conftest import gunicorn  # the tests' gunicorn: a free port, gunicorn.conf.py

    url = f"sqlite:///{database}"
    failures, names = [], list(variables or {})
    with gunicorn(url, workers=1) as base:
        shell = Shell(folder, {**environment(url, base), **(variables or {})}, base)
        try:
            for session in found:
                if session.skip:
                    continue
                problem = run_session(shell, session, values, outputs)
                if problem:
                    failures.append(problem)
                names += assigned(session)
            return failures, shell.variables(list(dict.fromkeys(names)))
        finally:
            shell.close()


def prelude_length(readme_sessions):
    """How many of the README's sessions the prelude is: up to the one that imports the sample."""
    for index, session in enumerate(readme_sessions):
        if any(PRELUDE_ENDS in command.text for command in session.commands):
            return index + 1
    raise AssertionError(f"README.md has no session running `{PRELUDE_ENDS}`: the documents' prelude")


def run_prelude(folder, snapshot, outputs=None, readme=None):
    """Runs the README's prelude from an empty database in `folder`; copies the
    database it leaves to `snapshot`. Returns (failures, variables, values)."""
    readme = readme or sessions(README)
    database, values = migrated(workspace(folder)), {}
    failures, variables = run_document(folder, database, readme[:prelude_length(readme)],
                                       values=values, outputs=outputs)
    with sqlite3.connect(database) as source, sqlite3.connect(snapshot) as target:
        source.backup(target)
    return failures, variables, values


def run_from_prelude(prelude, folder, found, outputs=None):
    """Runs the sessions `found` from a copy of the prelude's database, variables and values."""
    snapshot, variables, values = prelude
    folder = workspace(folder)
    database = folder / "instance" / "usage.db"
    shutil.copy(snapshot, database)
    failures, _ = run_document(folder, database, found, variables, dict(values), outputs)
    return failures


def document_sessions(path):
    """The sessions of `path` that run after the prelude."""
    found = sessions(path)
    return found[prelude_length(found):] if Path(path).resolve() == README else found


def update(paths):
    """Rewrites the printed output of every command whose output differs, in the
    documents `paths`, with this run's; not those with `…` (they are reported).
    A maintainer's tool: `.venv/bin/python tests/doc_examples.py README.md docs/x.md`."""
    sys.path.insert(0, str(ROOT / "tests"))
    with tempfile.TemporaryDirectory() as temporary:
        temporary = Path(temporary)
        outputs, readme = {}, sessions(README)
        _, variables, values = run_prelude(temporary / "prelude", temporary / "snapshot.db", outputs, readme)
        for index, path in enumerate(paths):
            path = Path(path).resolve()
            found = readme if path == README else sessions(path)
            later = found[prelude_length(found):] if path == README else found
            run_from_prelude((temporary / "snapshot.db", variables, values), temporary / f"doc{index}",
                             later, outputs)
            _rewrite(path, found, outputs)


def _rewrite(path, found, outputs):
    lines = path.read_text(encoding="utf-8").split("\n")
    changes = []
    for session in found:
        for command in session.commands:
            actual = outputs.get(id(command))
            if actual is None:
                continue
            if any(ELLIPSIS in line for line in command.expected):
                print(f"{shown(path)}:{command.line}: differs, and has {ELLIPSIS}: not rewritten\n{actual}")
                continue
            new = [(command.indent + line).rstrip() for line in actual.split("\n")[:-1]]
            changes.append((command.output_line, len(command.expected), new))
    for start, count, new in sorted(changes, reverse=True):
        lines[start:start + count] = new
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"{shown(path)}: {len(changes)} output(s) rewritten")


if __name__ == "__main__":
    update(sys.argv[1:])
