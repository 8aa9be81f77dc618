"""Reading policy files: YAML with positions, merge of a directory, validation with file:line, references, schema.

Uses only ``orchestrator.model``.
"""
