"""The pipeline spine, one video at a time: face tracks (:mod:`.faces`), landmarks
(:mod:`.landmarks`), EAR (:mod:`.ear`), blinks (:mod:`.blinks`), and the steps that chain them
with stamps (:mod:`.steps`, including :func:`~.steps.run_chain`).
"""
