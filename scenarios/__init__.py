"""Bundled scenarios: installed as the package data ``lab.bundled`` (see pyproject.toml)."""
