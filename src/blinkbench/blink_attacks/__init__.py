"""Attacks on the blink path itself: the landmark extractor and the EAR series."""
