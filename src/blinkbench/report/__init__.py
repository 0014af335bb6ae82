"""The HTML report (:mod:`.build`), its jinja2 templates (:mod:`.render`, ``templates/``) and
its figures (:mod:`.plotting`).
"""
