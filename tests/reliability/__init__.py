"""The reliability and security suite (`python -m pytest -m reliability`)."""
