"""Keypoint detectors behind one interface (:mod:`.base`); ``make_detector`` picks one."""
