"""BodyIKNet / HandIKNet: keypoints -> SMPL-H rotations (6D), shape and scale (:mod:`.inference`)."""
