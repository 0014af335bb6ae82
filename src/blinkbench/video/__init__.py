"""Video: decoding and writing (:mod:`.codec`), lossless FFV1 I/O (:mod:`.lossless`), compression
variants (:mod:`.compress`).
"""
