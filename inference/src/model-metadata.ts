import protobuf from 'protobufjs/minimal.js';

// Field numbers from onnx.proto: ModelProto.metadata_props = 14 (repeated StringStringEntryProto),
// StringStringEntryProto.key = 1, .value = 2. Everything else (the graph, the weights) is skipped
// by wire type, so reading the card never decodes tensors.
const MODEL_METADATA_PROPS = 14;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;
const WIRE_LENGTH_DELIMITED = 2;

/**
 * The `metadata_props` of an ONNX ModelProto as a key → value map. ONNX Runtime's JavaScript
 * sessions do not expose them, so they are read from the serialized model directly.
 * Throws a plain Error when the bytes are not a protobuf message (callers add the file name).
 */
export function readOnnxMetadataProps(model: Uint8Array): Map<string, string> {
  const props = new Map<string, string>();
  const reader = protobuf.Reader.create(model);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 0) throw new Error('not an ONNX model (invalid protobuf field 0)');
    if (field === MODEL_METADATA_PROPS && wire === WIRE_LENGTH_DELIMITED) {
      const [key, value] = readEntry(reader.bytes());
      props.set(key, value);
    } else {
      reader.skipType(wire);
    }
  }
  return props;
}

function readEntry(bytes: Uint8Array): [string, string] {
  const reader = protobuf.Reader.create(bytes);
  let key = '';
  let value = '';
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    if (field === ENTRY_KEY && (tag & 7) === WIRE_LENGTH_DELIMITED) key = reader.string();
    else if (field === ENTRY_VALUE && (tag & 7) === WIRE_LENGTH_DELIMITED) value = reader.string();
    else reader.skipType(tag & 7);
  }
  return [key, value];
}
