"""Root pytest config: every test in the workspace runs offline via the shared plugin."""

pytest_plugins = ("dlshared.testing",)
