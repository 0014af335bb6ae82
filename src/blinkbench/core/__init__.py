"""Core: file I/O and stamps (:mod:`.io`), output paths (:mod:`.paths`), params and schema
(:mod:`.config`), registries (:mod:`.registry`), the label mapping (:mod:`.labels`). Imports no other room.
"""
