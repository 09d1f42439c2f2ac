"""PluginConfig getters, environment substitution, and reading plugins.toml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from asherah_core import ConfigError, PluginConfig
from asherah_core.config import load_config_file


def cfg(values: dict[str, Any], **environ: str) -> PluginConfig:
    return PluginConfig(values, path="plugins.aws-v2", source="plugins.toml", environ=environ)


def error_of(call: Any, *args: Any) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args)
    return str(info.value)


# Getters -------------------------------------------------------------------------------


def test_getters_return_typed_values() -> None:
    c = cfg({"name": "x", "n": 3, "f": 1.5, "i_as_f": 2, "b": True})
    assert c.get_str("name") == "x"
    assert c.get_int("n") == 3
    assert c.get_float("f") == 1.5
    assert c.get_float("i_as_f") == 2.0
    assert isinstance(c.get_float("i_as_f"), float)
    assert c.get_bool("b") is True


def test_getters_return_the_default_when_absent() -> None:
    c = cfg({})
    assert c.get_str("a", "d") == "d"
    assert c.get_int("a", 7) == 7
    assert c.get_float("a", None) is None
    assert c.get_bool("a", False) is False


def test_missing_required_setting_names_the_path() -> None:
    assert error_of(cfg({}).get_str, "arn") == (
        "plugins.toml: plugins.aws-v2.arn: missing required setting"
    )


@pytest.mark.parametrize(
    ("getter", "value", "expected"),
    [
        ("get_str", 5, "expected a string, got a number"),
        ("get_str", "  ", "expected a non-empty string"),
        ("get_int", "5", "expected an integer, got a string"),
        ("get_int", 1.5, "expected an integer, got a number"),
        ("get_int", True, "expected an integer, got a boolean"),
        ("get_float", "1.5", "expected a number, got a string"),
        ("get_float", False, "expected a number, got a boolean"),
        ("get_bool", 1, "expected true or false, got a number"),
        ("get_bool", "true", "expected true or false, got a string"),
        ("get_bool", [True], "expected true or false, got a list"),
    ],
)
def test_wrong_types_are_refused_with_the_path(getter: str, value: Any, expected: str) -> None:
    message = error_of(getattr(cfg({"k": value}), getter), "k")
    assert message == f"plugins.toml: plugins.aws-v2.k: {expected}"


def test_a_present_value_is_checked_even_with_a_default() -> None:
    assert "expected an integer" in error_of(cfg({"n": "x"}).get_int, "n", 5)


def test_mapping_protocol_and_repr_without_values() -> None:
    c = cfg({"b": "secret-value", "a": 1})
    assert dict(c) == {"b": "secret-value", "a": 1}
    assert len(c) == 2
    assert "a" in c
    assert "secret-value" not in repr(c)
    assert repr(c) == "PluginConfig(path='plugins.aws-v2', source='plugins.toml', keys=['a', 'b'])"


def test_values_must_be_a_table_with_string_keys() -> None:
    with pytest.raises(ConfigError, match="expected a table, got a list"):
        PluginConfig([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="keys must be strings"):
        PluginConfig({1: "x"})  # type: ignore[dict-item]


# Environment substitution --------------------------------------------------------------


def test_whole_value_from_the_environment() -> None:
    assert cfg({"arn": "${ARN}"}, ARN="arn:aws:kms:x").get_str("arn") == "arn:aws:kms:x"


def test_default_when_the_variable_is_unset_or_empty() -> None:
    c = cfg({"a": "${A:-fallback}", "b": "${B:-fallback}", "c": "${C:-}"}, B="")
    assert c.get_str("a") == "fallback"
    assert c.get_str("b") == "fallback"
    assert c["c"] == ""


def test_set_variable_wins_over_default() -> None:
    assert cfg({"a": "${A:-fallback}"}, A="set").get_str("a") == "set"


def test_reference_embedded_in_a_string_and_dollar_escape() -> None:
    c = cfg({"url": "http://${HOST}:${PORT:-4566}/p", "price": "$$5 and $${HOST}"}, HOST="h")
    assert c.get_str("url") == "http://h:4566/p"
    assert c.get_str("price") == "$5 and ${HOST}"


def test_text_that_is_not_a_reference_is_left_alone() -> None:
    c = cfg({"a": "$HOME and ${not closed", "b": "${1BAD}"})
    assert c["a"] == "$HOME and ${not closed"
    assert c["b"] == "${1BAD}"


def test_missing_variable_names_the_path_and_the_variable() -> None:
    message = error_of(cfg, {"arn": "${KMS_ARN}"})
    assert message.startswith("plugins.toml: plugins.aws-v2.arn: environment variable $KMS_ARN")
    assert "${KMS_ARN:-default}" in message


def test_substitution_in_nested_tables_and_lists() -> None:
    c = cfg(
        {"regions": {"us-west-2": {"arn": "${W}"}}, "order": ["${A}", "b"]},
        W="arn-w",
        A="a",
    )
    region = c.get_table("regions").get_table("us-west-2")
    assert region.get_str("arn") == "arn-w"
    assert c["order"] == ["a", "b"]


def test_missing_variable_in_a_nested_table_names_the_full_path() -> None:
    message = error_of(cfg, {"regions": {"us-west-2": {"arn": "${W}"}}})
    assert "plugins.aws-v2.regions.us-west-2.arn: environment variable $W" in message


def test_missing_variable_in_a_list_names_the_index() -> None:
    assert "plugins.aws-v2.order[1]: environment variable $B" in error_of(
        cfg, {"order": ["a", "${B}"]}
    )


def test_values_from_the_environment_are_converted_by_the_getters() -> None:
    c = cfg(
        {"n": "${N}", "f": "${F}", "t": "${T}", "off": "${OFF}"},
        N=" 42 ",
        F="0.25",
        T="Yes",
        OFF="0",
    )
    assert c.get_int("n") == 42
    assert c.get_float("f") == 0.25
    assert c.get_bool("t") is True
    assert c.get_bool("off") is False


@pytest.mark.parametrize(
    ("getter", "expected"),
    [
        ("get_int", "expected an integer, got 'many'"),
        ("get_float", "expected a number, got 'many'"),
        ("get_bool", "expected true or false, got 'many'"),
    ],
)
def test_unconvertible_environment_values_name_the_variable(getter: str, expected: str) -> None:
    message = error_of(getattr(cfg({"k": "${COUNT}"}, COUNT="many"), getter), "k")
    assert message == f"plugins.toml: plugins.aws-v2.k (from $COUNT): {expected}"


def test_literal_strings_in_the_file_are_not_converted() -> None:
    # "5" written in the file is a string: only values from the environment are converted.
    assert "expected an integer, got a string" in error_of(cfg({"n": "5"}).get_int, "n")


def test_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASHERAH_TEST_REGION", "eu-west-1")
    assert PluginConfig({"r": "${ASHERAH_TEST_REGION}"}).get_str("r") == "eu-west-1"


# Tables and key checks -----------------------------------------------------------------


def test_check_keys_names_the_unknown_key_and_the_allowed_ones() -> None:
    c = cfg({"regoins": {}, "arn": "x"})
    message = error_of(c.check_keys, ["arn", "regions"])
    assert message == (
        "plugins.toml: plugins.aws-v2.regoins: unknown setting; expected one of arn, regions"
    )
    c.check_keys(["arn", "regoins", "extra"])  # no error


def test_get_table() -> None:
    c = cfg({"regions": {"us-west-2": {"arn": "a"}}, "arn": "x"})
    regions = c.get_table("regions")
    assert isinstance(regions, PluginConfig)
    assert regions.path == "plugins.aws-v2.regions"
    assert regions.source == "plugins.toml"
    assert regions.get_table("us-west-2").key_path("arn") == "plugins.aws-v2.regions.us-west-2.arn"


def test_get_table_absent() -> None:
    c = cfg({})
    empty = c.get_table("retry")
    assert len(empty) == 0
    assert empty.path == "plugins.aws-v2.retry"
    with pytest.raises(ConfigError, match=r"plugins\.aws-v2\.retry: missing required table"):
        c.get_table("retry", required=True)


def test_get_table_of_a_non_table() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.aws-v2\.arn: expected a table, got a string"):
        cfg({"arn": "x"}).get_table("arn")


def test_key_paths_quote_keys_that_are_not_bare() -> None:
    c = cfg({})
    assert c.key_path("us-west-2") == "plugins.aws-v2.us-west-2"
    assert c.key_path("a.b") == 'plugins.aws-v2."a.b"'
    assert PluginConfig({}).key_path("top") == "top"


def test_error_builds_a_config_error_for_a_key() -> None:
    error = cfg({"t": "${T}"}, T="x").error("t", "must be positive")
    assert isinstance(error, ConfigError)
    assert str(error) == "plugins.toml: plugins.aws-v2.t (from $T): must be positive"


# load_config_file ----------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plugins.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_returns_the_selected_name_and_its_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [kms]
        plugin = "aws-v2"

        [plugins.aws-v2]
        preferred_region = "us-west-2"
        [plugins.aws-v2.regions.us-west-2]
        arn = "arn:aws:kms:us-west-2:1:key/k"

        [plugins.static]
        master_key = "x"
        """.replace("        ", ""),
    )
    name, table = load_config_file(path)
    assert name == "aws-v2"
    assert table.path == "plugins.aws-v2"
    assert table.source == str(path)
    assert table.get_str("preferred_region") == "us-west-2"
    region = table.get_table("regions").get_table("us-west-2")
    assert region.get_str("arn") == "arn:aws:kms:us-west-2:1:key/k"
    assert str(path) in str(region.error("arn", "bad"))


def test_load_accepts_a_str_path_and_an_absent_plugin_table(tmp_path: Path) -> None:
    name, table = load_config_file(str(write(tmp_path, '[kms]\nplugin = "static"\n')))
    assert name == "static"
    assert len(table) == 0
    assert table.path == "plugins.static"


def test_load_substitutes_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASHERAH_TEST_KMS", "static")
    monkeypatch.setenv("ASHERAH_TEST_KEY", "k" * 32)
    path = write(
        tmp_path,
        '[kms]\nplugin = "${ASHERAH_TEST_KMS}"\n'
        '[plugins.static]\nmaster_key = "${ASHERAH_TEST_KEY}"\n',
    )
    name, table = load_config_file(path)
    assert (name, table.get_str("master_key")) == ("static", "k" * 32)


def test_unselected_plugin_tables_may_name_unset_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASHERAH_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        '[kms]\nplugin = "static"\n[plugins.static]\nmaster_key = "m"\n'
        '[plugins.aws-v2]\narn = "${ASHERAH_TEST_UNSET}"\n',
    )
    assert load_config_file(path)[0] == "static"
    selected = path.read_text().replace('plugin = "static"', 'plugin = "aws-v2"')
    path.write_text(selected)
    with pytest.raises(ConfigError, match=r"plugins\.aws-v2\.arn: environment variable"):
        load_config_file(path)


def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert error_of(load_config_file, missing) == f"{missing}: configuration file not found"


def test_load_unreadable_path(tmp_path: Path) -> None:
    assert "cannot read the configuration file" in error_of(load_config_file, tmp_path)


def test_load_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_config_file(write(tmp_path, "[kms\nplugin = "))
    assert info.value.__cause__ is not None


def test_load_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_bytes(b'[kms]\nplugin = "\xff"\n')
    assert "not valid UTF-8" in error_of(load_config_file, path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[plugins.static]\nmaster_key = "m"\n', "kms: missing required table"),
        ('kms = "static"\n', "kms: expected a table, got a string"),
        ("[kms]\n", "kms.plugin: missing required setting"),
        ("[kms]\nplugin = 3\n", "kms.plugin: expected a string, got a number"),
        ('[kms]\nplugin = "static"\nplugn = "x"\n', "kms.plugn: unknown setting"),
        (
            '[kms]\nplugin = "static"\n[kmss]\n',
            "kmss: unknown setting; expected one of asherah, kms, metastore, metastores, plugins",
        ),
        ('plugins = 3\n[kms]\nplugin = "static"\n', "plugins: expected a table, got a number"),
        ('[kms]\nplugin = "static"\n[plugins]\nstatic = 3\n', "plugins.static: expected a table"),
    ],
)
def test_load_structure_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = error_of(load_config_file, path)
    assert re.match(rf"{re.escape(str(path))}: {re.escape(expected)}", message), message
