"""Reading and writing scans: DICOM series, NIfTI, DICOM SEG."""
from pancreas_seg.io.scan import Scan

__all__ = ["Scan"]
