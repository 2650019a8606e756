//! The protobuf wire format: keys, varints, fixed-width numbers and length-delimited payloads; read, and written
//! as far as the server writes protobuf (its OpenAPI v2 document) and the tests build bodies.

/// How a field's value is laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

/// Why the bytes are not a protobuf message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("truncated protobuf message at byte {0}")]
    Truncated(usize),
    #[error("varint longer than 10 bytes at byte {0}")]
    LongVarint(usize),
    #[error("unsupported wire type {wire_type} (field {field}) at byte {at}")]
    WireType { wire_type: u64, field: u64, at: usize },
    #[error("field number 0 at byte {0}")]
    FieldZero(usize),
}

/// Reads one message's bytes front to back.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    pub fn key(&mut self) -> Result<Option<(u32, WireType)>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let field = key >> 3;
        let wire_type = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            // 3 and 4 are proto2 groups, which Kubernetes never uses.
            wire_type => return Err(WireError::WireType { wire_type, field, at }),
        };
        let number = u32::try_from(field).map_err(|_| WireError::WireType {
            wire_type: key & 7,
            field,
            at,
        })?;
        if number == 0 {
            return Err(WireError::FieldZero(at));
        }
        Ok(Some((number, wire_type)))
    }

    pub fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or(WireError::Truncated(self.pos))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::LongVarint(start))
    }

    /// A length-delimited payload.
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let at = self.pos;
        let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated(at))?;
        self.take(len)
    }

    /// Steps over a value of a field the caller does not read.
    pub fn skip(&mut self, wire_type: WireType) -> Result<(), WireError> {
        match wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::Len => self.bytes().map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(WireError::Truncated(self.pos))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
}

/// A varint's bytes.
pub fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A varint field.
#[cfg(test)]
pub fn int(number: u32, v: i64) -> Vec<u8> {
    [varint(u64::from(number) << 3), varint(v as u64)].concat()
}

/// A length-delimited field (string, bytes or message).
pub fn len(number: u32, payload: &[u8]) -> Vec<u8> {
    [
        varint(u64::from(number) << 3 | 2),
        varint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}
