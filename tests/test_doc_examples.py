"""Every shell session of README.md and docs/*.md, run against a fresh service.

A *session* is a code block (indented or fenced) whose first line starts
with `$ `. Each `$ ` line is a command (a line ending in `\\` continues on
the next); the lines after it, up to the next `$ ` or the end of the block,
are what it prints, standard output and standard error together. A command
followed by nothing must print nothing.

How they run:

- One bash process per document, in a folder where `.venv`, `examples` and
  `wsgi.py` link to the repository's and `instance/` is empty, so the
  commands run as typed in the repository (`.venv/bin/flask --app wsgi …`)
  and whatever they write stays out of it. Variables a command sets
  (`KEY=…`, `export DATABASE_URL=…`) are there for the next ones.
- The service: gunicorn (gunicorn.conf.py, one worker) on a free port, on a
  SQLite database migrated with `flask db upgrade`; `DATABASE_URL` names
  the same database in the shell. `http://127.0.0.1:8000` in a command is
  sent to that port, and the port is written back as 8000 in outputs.
  No webhook worker runs.
- README.md runs from an empty database. Its sessions up to and including
  the one that imports `examples/calls.jsonl` (tenants, keys, the sample)
  are the *prelude*: every docs/*.md starts from a copy of the database
  they left, with their shell variables (`$KEY`, `$ADMIN_KEY`,
  `$DASHBOARD_KEY`). So the documents do not depend on each other, nor on
  the README after its prelude (`calls sample` there, dated from today).

Outputs are compared line by line, except:

- Masked values, which differ from run to run (`doc_examples.MASKS`): API
  keys and key ids, webhook ids and secrets, request and event ids, ETags,
  and times of the run (RFC 3339 with microseconds: `created_at`, `at`,
  …). A value shown in a document matches any value of its kind, and from
  then on stands for that one: the same value later in the document must be
  the same in the run, and a command that pastes it (`KEY=usk_…`,
  `If-None-Match: "…"`) is sent the run's value.
- `…` in an expected line matches any text within the line; a line holding
  only `…` matches any number of lines. Documents use it where they leave
  something out (headers of `curl -i`, values that depend on today's date).
- Line ends, trailing spaces and trailing blank lines; and the line naming
  the database that the CLI writes on standard error (`Using database …`).

A block right after `<!-- doc-test: skip (why) -->` is not run: for what a
test cannot do (PostgreSQL, nginx and sudo, a clock of another day, a
Ctrl-C). The marker must say why, and such blocks are kept rare.

Exit statuses are not compared: what a command printed is.
"""
import pytest

from doc_examples import (
    README, ROOT, Expected, Shell, document_sessions, environment, run_from_prelude, run_prelude, run_session,
    sessions, substitute)

# The documents of docs/ with a session to run (the others have commands without output, or none).
DOCS = [path for path in sorted((ROOT / "docs").glob("*.md"))
        if any(not session.skip for session in document_sessions(path))]
README_LINES = 300


@pytest.fixture(scope="module")
def prelude(tmp_path_factory):
    """The README's prelude, run and checked once: a copy of the database it
    left, its shell variables and the values it showed."""
    snapshot = tmp_path_factory.mktemp("snapshot") / "usage.db"
    failures, variables, values = run_prelude(tmp_path_factory.mktemp("prelude"), snapshot)
    assert not failures, "\n\n".join(failures)
    return snapshot, variables, values


def test_readme_sessions(prelude, tmp_path):
    failures = run_from_prelude(prelude, tmp_path, document_sessions(README))
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("document", DOCS, ids=[f"docs/{path.name}" for path in DOCS])
def test_docs_sessions(prelude, tmp_path, document):
    failures = run_from_prelude(prelude, tmp_path, document_sessions(document))
    assert not failures, "\n\n".join(failures)


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_LINES, (
        f"README.md has {lines} lines, more than {README_LINES}: reference and design go to docs/")


def test_a_changed_output_fails(tmp_path):
    """The comparison is not vacuous: a session whose printed output is wrong fails."""
    document = tmp_path / "wrong.md"
    document.write_text("Text.\n\n    $ echo 'Imported: 30 created, 0 duplicates.'\n"
                        "    Imported: 31 created, 0 duplicates.\n", encoding="utf-8")
    (session,) = sessions(document)
    shell = Shell(tmp_path, environment("sqlite://", "http://127.0.0.1:1"), "http://127.0.0.1:1")
    try:
        problem = run_session(shell, session, {})
    finally:
        shell.close()
    assert problem and "+Imported: 30 created" in problem and "-Imported: 31 created" in problem


def test_a_masked_value_stands_for_one_value():
    """A key id shown twice must be one key id of the run, and a command that
    pastes it is sent the run's."""
    values = {}
    assert Expected(["Created key 85f553a9d75f434d"], values).match("Created key 0123456789abcdef\n", values) is None
    assert Expected(['{"key_id":"85f553a9d75f434d"}'], values).match('{"key_id":"fedcba9876543210"}\n', values)
    assert Expected(['{"key_id":"85f553a9d75f434d"}'], values).match('{"key_id":"0123456789abcdef"}\n', values) is None
    assert substitute("keys revoke 85f553a9d75f434d", values) == "keys revoke 0123456789abcdef"
