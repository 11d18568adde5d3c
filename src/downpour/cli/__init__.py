"""The ``downpour`` command line: one module per command group over the library.

:mod:`downpour.cli.main` holds the group and ``main``; :mod:`downpour.cli.common`
the options every command shares.
"""
