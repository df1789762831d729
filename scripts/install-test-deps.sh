#!/usr/bin/env bash
# The Debian packages the test suite's independent cross-checks run (dciodvfy; dcmtk's and GDCM's
# transcoders, which write the compressed DICOM series the codec tests read; Python with
# PyTorch/ONNX/pydicom/nibabel/SciPy, Chromium for the viewer, DejaVu fonts for the plots' text, Orthanc with its
# DICOMweb plugin as the PACS of the DICOMweb round trip, openssl for its HTTPS certificate), installed when missing so that
# `npm test` passes on a fresh Debian machine. Runs as `pretest`; .ci/run uses the same path.
set -euo pipefail

packages=(dicom3tools dcmtk libgdcm-tools python3-onnx python3-numpy python3-pydicom python3-pil python3-nibabel python3-scipy python3-torch chromium fonts-dejavu-core orthanc orthanc-dicomweb openssl)

if ! command -v dpkg >/dev/null 2>&1; then
  echo "install-test-deps: not a Debian system; the cross-check tests need the equivalents of: ${packages[*]}" >&2
  exit 0
fi
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "install-test-deps: error: the tests need Debian packages that are missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-test-deps: installing ${missing[*]} (apt-get)" >&2
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
