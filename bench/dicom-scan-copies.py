"""Writes COPIES copies of a DICOM series, each with its own Study/Series/SOP Instance UIDs and
patient id, so that a scan finds COPIES distinct series. Used by bench/dicom-scan.ts.

Usage: python3 dicom-scan-copies.py SOURCE_DIR OUT_DIR COPIES
"""
import os
import sys

import pydicom
from pydicom.uid import generate_uid

src, out, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = sorted(f for f in os.listdir(src) if not f.startswith("."))
datasets = [pydicom.dcmread(os.path.join(src, f)) for f in files]
for c in range(copies):
    study, series = generate_uid(), generate_uid()
    folder = os.path.join(out, f"study{c:05d}")
    os.makedirs(folder, exist_ok=True)
    for f, ds in zip(files, datasets):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"P{c:05d}"
        ds.save_as(os.path.join(folder, f), write_like_original=True)
