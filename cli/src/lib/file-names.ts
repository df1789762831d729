// NIfTI file-name rules live with input discovery in @alhvr/inference, which names every case.
export { isNiftiPath, stripNiftiExtension } from '@alhvr/inference/node';
