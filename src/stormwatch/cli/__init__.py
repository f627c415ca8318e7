"""The ``stormwatch`` command: a thin shell over the library."""
