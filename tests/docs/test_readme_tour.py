"""The README's tour, run as written against a live ``postroom serve --dev`` on both databases.

Its shell commands and Python snippets are extracted from README.md in document order. A shell command's output must
contain each ``# → …`` line that follows it; a Python snippet's printed lines must equal its ``# → …`` lines, in
order. Only what ties the run to this machine is substituted: the ``.venv/bin/`` of this checkout, and free ports for
8025 and 2587 (the server gets them through ``POSTROOM_PORT`` and ``POSTROOM_SMTP_PORT``). So the README cannot drift
from the product.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Backend, free_port

README = ROOT / "README.md"
EXPECT = "# → "
FIRST_COMMAND = "./scripts/install.sh && .venv/bin/postroom serve --dev"


@dataclass
class Step:
    language: str
    code: str
    expected: list[str] = field(default_factory=list)


def _blocks(markdown: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(sh|python)\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def tour_steps(markdown: str) -> list[Step]:
    """The tour's steps: each shell command (continuation lines joined) and each Python snippet, with what it
    must print."""
    tour = markdown[markdown.index("## A five-minute tour") :]
    tour = tour[: tour.index("\n## ", 1)]
    steps: list[Step] = []
    for language, body in _blocks(tour):
        if language == "python":
            expected = [line.strip()[len(EXPECT) :] for line in body.splitlines() if line.strip().startswith(EXPECT)]
            steps.append(Step("python", body, expected))
            continue
        command: list[str] = []
        for line in body.splitlines():
            if line.startswith(EXPECT):
                steps[-1].expected.append(line[len(EXPECT) :])
            elif line.startswith("#") or not line.strip():
                continue
            else:
                command.append(line.rstrip("\\").rstrip() if line.endswith("\\") else line)
                if not line.endswith("\\"):
                    steps.append(Step("sh", " ".join(part.strip() for part in command)))
                    command = []
    return steps


@dataclass
class Machine:
    """A fresh directory as a newcomer's, the server's ports, and the settings that point at the database."""

    cwd: Path
    port: int
    smtp_port: int
    env: dict[str, str]

    def localise(self, text: str) -> str:
        text = text.replace("http://127.0.0.1:8025", f"http://127.0.0.1:{self.port}")
        text = text.replace("127.0.0.1:2587", f"127.0.0.1:{self.smtp_port}")
        return text.replace(".venv/bin/", f"{Path(sys.executable).parent}/")


@contextlib.contextmanager
def dev_server(machine: Machine, log: Path) -> Iterator[str]:
    """The README's first command, without its install step (this checkout is installed); yields what it printed."""
    first = _blocks(README.read_text())[0][1].splitlines()[0]
    assert first.startswith(FIRST_COMMAND), first
    command = machine.localise(FIRST_COMMAND.split("&& ", 1)[1]).split()
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=machine.cwd, env=machine.env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{machine.port}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            yield log.read_text()
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def machine(own_backend: Backend, tmp_path: Path) -> Machine:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_") and k != "LETTR_API_KEY"}
    port, smtp_port = free_port(), free_port()
    env.update({"POSTROOM_PORT": str(port), "POSTROOM_SMTP_PORT": str(smtp_port), "POSTROOM_SMTPS_PORT": "0",
                "POSTROOM_BOUNCE_PORT": "0"})  # fmt: skip
    if own_backend.name == "postgres":  # a fresh database of its own; SQLite is the README's ./postroom-data
        env["POSTROOM_DATABASE_URL"] = own_backend.env["POSTROOM_DATABASE_URL"]
    cwd = tmp_path / "newcomer"
    cwd.mkdir()
    return Machine(cwd, port, smtp_port, env)


def run_shell(machine: Machine, step: Step, exports: dict[str, str]) -> None:
    command = machine.localise(step.code)
    export = re.fullmatch(r"export (\w+)=(.*)", command)
    script = command if export is None else f"printf %s {export.group(2)}"
    result = subprocess.run(  # noqa: S603
        ["bash", "-c", script], cwd=machine.cwd, env={**machine.env, **exports}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{step.code}\n{result.stdout}\n{result.stderr}"
    if export is not None:
        exports[export.group(1)] = result.stdout
    for expected in step.expected:
        assert machine.localise(expected) in result.stdout, f"{step.code}\nwanted {expected!r} in:\n{result.stdout}"


def run_python(machine: Machine, step: Step, exports: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in exports.items():
        monkeypatch.setenv(name, value)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(machine.localise(step.code), "README.md", "exec"), {"__name__": "readme"})  # noqa: S102
    assert printed.getvalue().splitlines() == step.expected, step.code


@pytest.mark.skipif(shutil.which("swaks") is None or shutil.which("curl") is None, reason="needs swaks and curl")
def test_the_readme_tour_runs_as_written(machine: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = tour_steps(README.read_text())
    assert len(steps) >= 10 and sum(step.language == "python" for step in steps) >= 1
    exports: dict[str, str] = {}
    with dev_server(machine, tmp_path / "serve.log") as printed:
        key = (machine.cwd / "postroom-data" / "dev-sandbox-key").read_text().strip()
        assert key.startswith("lttr_sandbox_")
        assert f"Sandbox key (created in postroom-data/dev-sandbox-key): {key}" in printed
        assert "Sending domain: example.test (approved)" in printed
        for step in steps:
            if step.language == "sh":
                run_shell(machine, step, exports)
            else:
                run_python(machine, step, exports, monkeypatch)
    assert exports["LETTR_API_KEY"] == key

    # A second start prints the same key again, saved, rather than making a new one.
    with dev_server(machine, tmp_path / "serve-again.log") as printed:
        assert f"Sandbox key (saved in postroom-data/dev-sandbox-key): {key}" in printed


def test_the_tour_parser_attaches_outputs_to_their_commands() -> None:
    markdown = "## A five-minute tour\n```sh\n# say\necho a \\\n  b\n# → a b\ntrue\n```\n```python\nprint(1)\n# → 1\n```\n## Next\n"
    steps = tour_steps(markdown)
    assert [(s.language, s.code, s.expected) for s in steps] == [
        ("sh", "echo a b", ["a b"]),
        ("sh", "true", []),
        ("python", "print(1)\n# → 1\n", ["1"]),
    ]
