"""detector: object detection and segmentation (course days 14-15)."""
