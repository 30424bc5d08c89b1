from pathlib import Path

from anchor_embed.data.schemas import SCHEMAS, render

FOLDER = Path(__file__).resolve().parents[2] / "data_schemas"


def test_exported_schemas_match_models():
    for name in SCHEMAS:
        path = FOLDER / f"{name}.schema.json"
        assert path.is_file(), f"{path} missing: run `make schemas`"
        assert path.read_text() == render(name), f"{path} is stale: run `make schemas`"
    extra = {p.name for p in FOLDER.glob("*.schema.json")} - {f"{n}.schema.json" for n in SCHEMAS}
    assert not extra, f"schemas without a model: {extra}"
