"""Face stages: landmark tracker (every frame), analysis-by-synthesis fit (keyframes),
the MediaPipe-468 correspondence and the face renderer."""
