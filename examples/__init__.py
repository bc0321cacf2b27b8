"""Examples of user code a config can name by import path (see plugins.py and plugins.yaml)."""
