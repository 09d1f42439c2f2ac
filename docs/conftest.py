"""The example plugin's tests need it installed; tests/test_plugin_guide.py runs them in a venv."""

collect_ignore = ["examples"]
