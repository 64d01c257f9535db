"""Shared foundations (numpy/stdlib only; Blender imports these): errors, options, protocol,
capture file, safe .npz reading, skeleton, rotations, LBS."""
