"""The defaults have one home: workflow/schemas/config.schema.yaml; config/config.yaml shows them."""

import yaml
from recipe import ROOT, schema_defaults


def test_config_yaml_shows_exactly_the_schema_defaults():
    shown = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    defaults = schema_defaults()
    for section in sorted(set(shown) | set(defaults)):
        assert shown.get(section) == defaults.get(section), (
            f"config/config.yaml [{section}] differs from the schema's defaults: "
            f"shown {shown.get(section)!r}, schema {defaults.get(section)!r}"
        )

