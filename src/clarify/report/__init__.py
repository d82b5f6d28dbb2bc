"""``results/report.md`` by section: one module per section, :mod:`.figures` for the PNGs,
:mod:`.inputs` for the artifacts read, :mod:`.document` to put them together."""
