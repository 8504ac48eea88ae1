"""Pure modules stay pure: no discord outside the Discord face, no torch in the domain core."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PURE = ["bot/scoring.py", "bot/dataset.py", "bot/story.py", "bot/training/gate.py", "bot/config.py", "bot/trials.py"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_discord_only_in_app_and_cogs():
    """No module outside cogs/ and bot/app.py imports discord."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "bot").rglob("*.py")
        if p.name != "app.py" and "discord" in _imports(p)
    ]
    assert offenders == []


def test_pure_core_imports_no_heavy_or_io_libraries():
    """Scoring, dataset, story, gate and config import neither discord, torch nor aiosqlite."""
    for rel in PURE:
        assert not _imports(ROOT / rel) & {"discord", "torch", "aiosqlite", "transformers", "peft"}, rel


def _module_imports(path: Path) -> set[str]:
    """Full dotted names of every absolute import of a module (inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_below_the_entry_points_imports_them():
    """training/, engine/ and the pure modules never reach up into the CLI or the Discord application."""
    below = [*(ROOT / "bot" / "training").rglob("*.py"), *(ROOT / "bot" / "engine").rglob("*.py")]
    below += [ROOT / rel for rel in PURE]
    offenders = {
        str(p.relative_to(ROOT)): sorted(_module_imports(p) & {"bot.cli", "bot.app"})
        for p in below
        if _module_imports(p) & {"bot.cli", "bot.app"}
    }
    assert offenders == {}
