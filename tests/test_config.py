"""The defaults have one home: workflow/schemas/config.schema.yaml; config/config.yaml shows them."""

import yaml
from recipe import ROOT, SCHEMA, schema_defaults

from scratchcnn import configcheck


def test_config_yaml_shows_exactly_the_schema_defaults():
    shown = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    defaults = schema_defaults()
    for section in sorted(set(shown) | set(defaults)):
        assert shown.get(section) == defaults.get(section), (
            f"config/config.yaml [{section}] differs from the schema's defaults: "
            f"shown {shown.get(section)!r}, schema {defaults.get(section)!r}"
        )



def _schema():
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def test_an_unknown_key_is_named_with_its_file_the_keys_beside_it_and_a_near_miss(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("trian: {lr: 0.1}\n")
    second.write_text("train: {learnig_rate: 0.1}\n")
    schema = _schema()
    lines = configcheck.problems({"trian": {"lr": 0.1}, "train": {"learnig_rate": 0.1}}, schema, [first, second])
    train_keys = ", ".join(sorted(schema["properties"]["train"]["properties"]))
    top_keys = ", ".join(sorted(schema["properties"]))
    assert lines == [
        f"train.learnig_rate (in {second}): unknown key; the keys of train are: {train_keys}",
        f"trian (in {first}): unknown key (did you mean train?); the top-level keys are: {top_keys}",
    ]
    assert "lr, lr_decay" in train_keys and "data, device" in top_keys


def test_a_bad_value_names_the_last_file_that_sets_it_or_the_command_line(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train: {lr: -1, seeds: [0, 1]}\ndevice: tpu\n")
    second.write_text("train: {lr: -2}\n")
    data = {"train": {"lr": -2, "seeds": [0, -1]}, "device": "tpu"}
    lines = configcheck.problems(data, _schema(), [first, second], command_line={"device": "tpu"})
    assert lines == [
        "device (in --config): 'tpu' is not one of ['auto', 'cpu', 'gpu']",
        f"train.lr (in {second}): -2 is less than or equal to the minimum of 0",
        f"train.seeds[1] (in {first}): -1 is less than the minimum of 0",
    ]


def test_a_list_item_only_a_later_file_holds_is_named_with_that_file(tmp_path):
    """An earlier file's shorter list does not hold the item: it is skipped, not indexed past its end."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train: {seeds: [0]}\n")
    second.write_text("train: {seeds: [0, -1]}\n")
    lines = configcheck.problems({"train": {"seeds": [0, -1]}}, _schema(), [first, second])
    assert lines == [f"train.seeds[1] (in {second}): -1 is less than the minimum of 0"]


def test_a_valid_config_has_no_problems_and_an_unset_key_names_no_file(tmp_path):
    assert configcheck.problems(schema_defaults(), _schema(), [tmp_path / "missing.yaml"]) == []
    assert configcheck.problems({"seed": -1}, _schema()) == ["seed: -1 is less than the minimum of 0"]


def test_command_line_strings_are_read_as_the_schema_types_them():
    # Snakemake hands a nested --config value (train='{lr: 0.5}') over with every scalar a string
    given = {
        "seed": 3,
        "device": "gpu",
        "train": {"lr": "0.5", "reg": "1e-4", "clip": "0", "epochs": "3", "seeds": ["0", "4"]},
        "data": {"synthetic": "true", "md5": "1" * 32, "url": "2.5"},
        "model": {"filters": "2.5", "bn_momentum": "fast"},
        "sweep": {"epochs": "yes"},
    }
    assert configcheck.typed_command_line(given, _schema()) == {
        "seed": 3,
        "device": "gpu",
        "train": {"lr": 0.5, "reg": 1e-4, "clip": 0, "epochs": 3, "seeds": [0, 4]},
        "data": {"synthetic": True, "md5": "1" * 32, "url": "2.5"},  # strings where the schema asks for one
        "model": {"filters": 2.5, "bn_momentum": "fast"},  # for the check to name
        "sweep": {"epochs": "yes"},  # a boolean is no integer
    }
    lines = configcheck.problems({"model": {"filters": 2.5}}, _schema(), command_line={"model": {"filters": "2.5"}})
    assert lines == ["model.filters (in --config): 2.5 is not of type 'integer'"]


def test_an_exponent_without_a_dot_or_a_sign_is_a_number():
    """YAML 1.1 reads 1e4 as a string, like 1e-4: --config train='{reg: 1e4}' is 10000.0, and
    a config file's reg: 1e4 is matched for coerce_float_strings (workflow/rules/common.smk)."""
    assert configcheck.typed_command_line({"train": {"reg": "1e4"}}, _schema()) == {"train": {"reg": 10000.0}}
    assert yaml.safe_load("reg: 1e4") == {"reg": "1e4"}
    assert configcheck.FLOAT_STRING.match("1e4") and configcheck.FLOAT_STRING.match("2E3")


def test_numbers_take_the_form_their_key_asks_for():
    """The check accepts 200.0 (or 2e2, read as 200.0) as an integer, which a step's integer flag
    then refuses; and clip 5 and 5.0 are one setting, which must give one command (a rerun
    trigger). Values the check refuses are left for it."""
    given = {"seed": 1.0, "train": {"batch_size": 32.0, "clip": 5, "lr": 1, "seeds": [0.0, 2], "train_subset": 200.0,
                                    "reg": 0, "epochs": True},
             "model": {"bn_momentum": 1, "filters": 2.5}, "data": {"md5": "5", "n_val": 1e2}}  # fmt: skip
    typed = configcheck.as_schema_types(given, _schema())
    assert typed == {"seed": 1, "train": {"batch_size": 32, "clip": 5.0, "lr": 1.0, "seeds": [0, 2], "train_subset": 200,
                                          "reg": 0.0, "epochs": True},
                     "model": {"bn_momentum": 1.0, "filters": 2.5}, "data": {"md5": "5", "n_val": 100}}  # fmt: skip
    assert [type(v) for v in (typed["seed"], typed["train"]["batch_size"], typed["train"]["clip"])] == [int, int, float]


def test_repeated_keys_are_found_at_any_depth_with_both_lines():
    text = "a: 1\nb:\n  - x: 1\n    x: 2\n  - x: 3\nb: 2\n"
    assert configcheck.repeated_keys(text) == [
        "line 4: b[0].x is given again (first on line 3), and YAML would keep only the last",
        "line 6: b is given again (first on line 2), and YAML would keep only the last",
    ]
    for name in ("config.yaml", "demo.yaml", "quick.yaml", "grid.yaml", "demo_grid.yaml", "quick_grid.yaml"):
        assert configcheck.repeated_keys((ROOT / "config" / name).read_text()) == [], name


def test_a_yaml_mistake_is_told_with_its_line_and_what_was_left_open():
    assert configcheck.yaml_syntax_error("a: 1\nb: [1, 2\n") == (
        "line 3, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence from line 2, column 4)"
    )
    assert configcheck.yaml_syntax_error("train:\n  epochs: 3\n   lr: 1\n") == "line 3, column 6: mapping values are not allowed here"
    assert configcheck.yaml_syntax_error("a: *x\n") == "line 1, column 4: found undefined alias 'x'"
    for name in ("config.yaml", "demo.yaml", "quick.yaml", "grid.yaml", "demo_grid.yaml", "quick_grid.yaml"):
        assert configcheck.yaml_syntax_error((ROOT / "config" / name).read_text()) is None, name


def test_the_models_own_defaults_are_the_schemas():
    """model.make_arch() is the study's network for callers outside the pipeline (tests, benchmarks);
    its defaults repeat the schema's, so they are held equal here."""
    from scratchcnn import model as cnn

    arch, m = cnn.make_arch(), schema_defaults()["model"]
    assert arch["filters1"] == arch["filters2"] == m["filters"]
    assert {k: arch[k] for k in ("kernel_size", "padding1", "padding2", "pool_size", "pool_stride")} == {
        k: m[k] for k in ("kernel_size", "padding1", "padding2", "pool_size", "pool_stride")
    }
