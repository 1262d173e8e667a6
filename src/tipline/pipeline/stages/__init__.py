"""Stage modules; each registers its stages with ``tipline.pipeline.core.stage``."""
