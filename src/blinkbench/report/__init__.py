"""The HTML report (:mod:`.build`) and its figures (:mod:`.plotting`).
"""
