// The DICOMweb transport lives in @alhvr/core/node, so that training (which may import core only)
// reads pseudo-labels from a PACS through the same client as alhvr-segment; re-exported here for
// @alhvr/inference/node's callers.
export { DicomwebError, DicomwebTransport, displayUrl, jsonValue, type DicomJson, type DicomwebConnection, type DicomwebFailure } from '@alhvr/core/node';
