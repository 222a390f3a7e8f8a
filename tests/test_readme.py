"""The README's two opening commands stay true: CI runs exactly the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [next(line for line in block.splitlines() if not line.startswith("#")) for block in blocks]


def test_readme_opens_with_the_demo_and_the_test_command() -> None:
    demo, tests = _commands()
    assert demo.startswith("python3 -m venv .venv && ") and demo.endswith("rewardq demo")
    assert tests.startswith("python3 -m venv .venv && ") and tests.endswith(".venv/bin/pytest")
    assert '"torch==2.13.0"' in demo and '"torch==2.13.0"' in tests


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()
