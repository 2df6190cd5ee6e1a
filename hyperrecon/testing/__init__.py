"""Test helpers shipped with the package for plugin authors: :mod:`hyperrecon.testing.contracts`."""
