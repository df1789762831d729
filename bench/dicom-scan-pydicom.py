"""Baseline for bench/dicom-scan.ts: pydicom reads every file's header (stop_before_pixels) under
ROOT and groups the files by SeriesInstanceUID. Prints JSON: files, series, seconds."""
import json
import os
import sys
import time

import pydicom

root = sys.argv[1]
t0 = time.perf_counter()
series = {}
files = 0
for folder, _, names in os.walk(root):
    for name in sorted(names):
        ds = pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True)
        series.setdefault(ds.SeriesInstanceUID, []).append(float(ds.ImagePositionPatient[2]))
        files += 1
print(json.dumps({"files": files, "series": len(series), "seconds": time.perf_counter() - t0}))
