"""The test folders are not packages, so pytest needs every test file's name to be unique across
them; a duplicate only fails when both layers are collected together (as ./iot test does)."""
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_names_are_unique_across_layers():
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
