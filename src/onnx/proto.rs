//! A tiny, generic Protocol Buffers wire-format *encoder*.
//!
//! Only what ONNX needs: varints, length-delimited fields (bytes, strings,
//! nested messages), `fixed32` floats, and both encodings of repeated
//! scalars.  It knows nothing about ONNX; the schema lives in the sibling
//! modules.
//!
//! Every field is written as `key = (field_number << 3) | wire_type` followed
//! by the payload (see <https://protobuf.dev/programming-guides/encoding/>).
//!
//! Nested messages are encoded into a scratch buffer first and then copied
//! behind their length prefix.  That costs one extra copy per nesting level,
//! which is negligible next to building the weights in the first place, and
//! keeps the encoder free of a separate size-computation pass.

/// The protobuf wire types used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// `int32`, `int64`, `uint64`, `bool`, `enum`.
    Varint = 0,
    /// `fixed64`, `double` (unused by ONNX writing, listed for completeness).
    Fixed64 = 1,
    /// `bytes`, `string`, embedded messages, packed repeated scalars.
    Len = 2,
    /// `fixed32`, `float`.
    Fixed32 = 5,
}

/// Appends `value` to `buf` as a base-128 varint (7 bits per byte, low
/// group first, high bit set on every byte but the last).
pub fn write_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Number of bytes [`write_varint`] produces for `value` (1..=10).
pub fn varint_len(value: u64) -> usize {
    // Each byte carries 7 payload bits; 0 still needs one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// An append-only protobuf message writer.
///
/// Field order is the caller's business; the ONNX encoders write fields in
/// ascending field-number order so the output is byte-identical to what the
/// reference protobuf serializer produces for the same message.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded bytes so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Consumes the encoder, returning the encoded message.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes a field key.
    pub fn key(&mut self, field: u32, wire_type: WireType) {
        write_varint(&mut self.buf, (u64::from(field) << 3) | wire_type as u64);
    }

    /// An `int64` (or `uint64`) field.  Negative values are written as their
    /// two's-complement `u64`, i.e. always 10 bytes — that is what protobuf
    /// specifies for `int64` (only `sint64` uses zig-zag).
    pub fn int64(&mut self, field: u32, value: i64) {
        self.key(field, WireType::Varint);
        write_varint(&mut self.buf, value as u64);
    }

    /// An `int32` or enum field.  Protobuf sign-extends `int32` to 64 bits
    /// on the wire, so this is the same bytes as [`Encoder::int64`].
    pub fn int32(&mut self, field: u32, value: i32) {
        self.int64(field, i64::from(value));
    }

    /// A `float` field: `fixed32`, IEEE-754 little-endian.
    pub fn float(&mut self, field: u32, value: f32) {
        self.key(field, WireType::Fixed32);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A `bytes` field (length-delimited).
    pub fn bytes(&mut self, field: u32, value: &[u8]) {
        self.key(field, WireType::Len);
        write_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    /// A `string` field; protobuf strings are UTF-8 `bytes` on the wire.
    pub fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// An embedded message whose body is written by `body`.
    pub fn message(&mut self, field: u32, body: impl FnOnce(&mut Encoder)) {
        let mut inner = Encoder::new();
        body(&mut inner);
        self.bytes(field, &inner.buf);
    }

    /// A repeated `int64` field declared *without* `[packed = true]` in a
    /// proto2 schema: one key per element.
    pub fn repeated_int64(&mut self, field: u32, values: &[i64]) {
        for &v in values {
            self.int64(field, v);
        }
    }

    /// A repeated `float` field declared without `[packed = true]`.
    pub fn repeated_float(&mut self, field: u32, values: &[f32]) {
        for &v in values {
            self.float(field, v);
        }
    }

    /// A packed repeated `int64` field (`[packed = true]`, or any proto3
    /// repeated scalar): one key, a byte length, then the bare varints.
    /// Written even when empty so that the field's presence is explicit.
    pub fn packed_int64(&mut self, field: u32, values: &[i64]) {
        let mut body = Vec::with_capacity(values.len());
        for &v in values {
            write_varint(&mut body, v as u64);
        }
        self.bytes(field, &body);
    }

    /// A packed repeated `float` field: one key, a byte length, then
    /// 4 little-endian bytes per element.
    pub fn packed_float(&mut self, field: u32, values: &[f32]) {
        let body: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut b = Vec::new();
        write_varint(&mut b, v);
        b
    }

    #[test]
    fn varints_of_known_values() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(1), [0x01]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn varint_len_matches_encoding() {
        for v in [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 35, u64::MAX] {
            assert_eq!(varint_len(v), varint(v).len(), "value {v}");
        }
    }

    #[test]
    fn negative_int64_is_ten_bytes() {
        let mut e = Encoder::new();
        e.int64(1, -1);
        let expected = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(e.as_bytes(), expected);

        let mut e = Encoder::new();
        e.int32(1, -2);
        assert_eq!(e.as_bytes().len(), 11, "int32 is sign-extended to 64 bits");
        assert_eq!(e.as_bytes()[1], 0xfe);
    }

    #[test]
    fn keys_and_scalars() {
        let mut e = Encoder::new();
        e.int64(1, 150); // the canonical example from the protobuf docs
        e.float(2, 1.0);
        e.string(2, "testing");
        e.int32(20, 4); // field 20 needs a two-byte key
        let mut want = vec![0x08, 0x96, 0x01, 0x15, 0x00, 0x00, 0x80, 0x3f, 0x12, 0x07];
        want.extend_from_slice(b"testing");
        want.extend_from_slice(&[0xa0, 0x01, 0x04]);
        assert_eq!(e.into_bytes(), want);
    }

    #[test]
    fn nested_message_is_length_prefixed() {
        let mut e = Encoder::new();
        e.message(3, |m| m.int64(1, 150));
        assert_eq!(e.as_bytes(), [0x1a, 0x03, 0x08, 0x96, 0x01]);
        let mut empty = Encoder::new();
        empty.message(7, |_| {});
        assert_eq!(empty.as_bytes(), [0x3a, 0x00]);
    }

    #[test]
    fn repeated_vs_packed() {
        let mut e = Encoder::new();
        e.repeated_int64(8, &[3, 270]);
        assert_eq!(e.as_bytes(), [0x40, 0x03, 0x40, 0x8e, 0x02]);

        let mut e = Encoder::new();
        e.packed_int64(4, &[3, 270, 86_942]); // protobuf docs example
        assert_eq!(e.as_bytes(), [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]);

        let mut e = Encoder::new();
        e.packed_float(4, &[1.0, -2.0]);
        assert_eq!(e.as_bytes(), [0x22, 0x08, 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);

        let mut e = Encoder::new();
        e.repeated_float(7, &[0.5]);
        assert_eq!(e.as_bytes(), [0x3d, 0, 0, 0, 0x3f]);
    }
}
