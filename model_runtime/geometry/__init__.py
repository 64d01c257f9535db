"""Geometry shared by the runtime and the Blender add-on (numpy; torch only where asked for).

* :mod:`.alignment`: similarity / rigid alignment of point sets (Umeyama), numpy and torch;
* :mod:`.camera`: pinhole intrinsics from a field of view, calibration files.

Importing this package (or its modules) never imports torch, scipy or cv2.
"""
