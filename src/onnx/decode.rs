//! Test-only protobuf *decoder*: parses wire-format bytes into untyped
//! fields so tests can walk an encoded model structurally, independent of
//! the encoder's code paths.

/// One decoded field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Bytes(Vec<u8>),
}

/// A decoded message: its fields in wire order.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg(pub Vec<(u32, Value)>);

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let bytes = buf.get(*pos..*pos + n).ok_or("truncated field")?;
    *pos += n;
    Ok(bytes)
}

/// Parses `buf` as one message; errors on malformed input.
pub fn parse(buf: &[u8]) -> Result<Msg, String> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        let field = u32::try_from(key >> 3).map_err(|e| e.to_string())?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(buf, &mut pos)?),
            1 => {
                Value::Fixed64(u64::from_le_bytes(take(buf, &mut pos, 8)?.try_into().map_err(|_| "fixed64")?))
            }
            2 => {
                let n = read_varint(buf, &mut pos)? as usize;
                Value::Bytes(take(buf, &mut pos, n)?.to_vec())
            }
            5 => {
                Value::Fixed32(u32::from_le_bytes(take(buf, &mut pos, 4)?.try_into().map_err(|_| "fixed32")?))
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        fields.push((field, value));
    }
    Ok(Msg(fields))
}

impl Msg {
    /// All values of `field`, in order.
    pub fn all(&self, field: u32) -> Vec<&Value> {
        self.0.iter().filter(|(f, _)| *f == field).map(|(_, v)| v).collect()
    }

    /// All embedded messages of `field`.
    pub fn msgs(&self, field: u32) -> Vec<Msg> {
        self.all(field)
            .into_iter()
            .map(|v| match v {
                Value::Bytes(b) => parse(b).expect("embedded message"),
                other => panic!("field {field} is not a message: {other:?}"),
            })
            .collect()
    }

    /// The single embedded message of `field`.
    pub fn msg(&self, field: u32) -> Msg {
        let mut m = self.msgs(field);
        assert_eq!(m.len(), 1, "field {field} count");
        m.remove(0)
    }

    /// All strings of `field`.
    pub fn strs(&self, field: u32) -> Vec<String> {
        self.all(field)
            .into_iter()
            .map(|v| match v {
                Value::Bytes(b) => String::from_utf8(b.clone()).expect("utf-8"),
                other => panic!("field {field} is not a string: {other:?}"),
            })
            .collect()
    }

    /// The single string of `field`.
    pub fn str(&self, field: u32) -> String {
        let mut s = self.strs(field);
        assert_eq!(s.len(), 1, "field {field} count");
        s.remove(0)
    }

    /// All varints of `field` as `i64`.
    pub fn ints(&self, field: u32) -> Vec<i64> {
        self.all(field)
            .into_iter()
            .map(|v| match v {
                Value::Varint(x) => *x as i64,
                other => panic!("field {field} is not a varint: {other:?}"),
            })
            .collect()
    }

    /// The single varint of `field` as `i64`.
    pub fn int(&self, field: u32) -> i64 {
        let i = self.ints(field);
        assert_eq!(i.len(), 1, "field {field} count");
        i[0]
    }
}
