//! Protocol Buffers' wire format, as much as the inference service needs: varints, fixed 32- and
//! 64-bit values, length-delimited fields (strings, bytes, nested messages, packed repeated
//! scalars), and skipping fields a reader does not know. Reading never trusts a length: every
//! one is checked against what is left, so a malformed message is an error, never a panic.

/// The wire types.
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

type Result<T> = std::result::Result<T, Malformed>;

fn malformed(what: impl Into<String>) -> Malformed {
    Malformed(what.into())
}

/// Reads fields off a message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self.buf.split_first().ok_or_else(|| malformed("a varint is cut short"))?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("a varint is longer than 10 bytes"))
    }

    /// The next field's number and wire type; `None` at the end of the message.
    pub(crate) fn key(&mut self) -> Result<Option<(u32, u8)>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| malformed("a field number is out of range"))?;
        if field == 0 {
            return Err(malformed("field number 0"));
        }
        Ok(Some((field, (key & 7) as u8)))
    }

    pub(crate) fn len_delimited(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| malformed("a length is out of range"))?;
        if len > self.buf.len() {
            return Err(malformed(format!("a field of {len} bytes in a message with {} left", self.buf.len())));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn fixed32(&mut self) -> Result<[u8; 4]> {
        let (head, rest) = self.buf.split_first_chunk::<4>().ok_or_else(|| malformed("a 32-bit value is cut short"))?;
        self.buf = rest;
        Ok(*head)
    }

    pub(crate) fn fixed64(&mut self) -> Result<[u8; 8]> {
        let (head, rest) = self.buf.split_first_chunk::<8>().ok_or_else(|| malformed("a 64-bit value is cut short"))?;
        self.buf = rest;
        Ok(*head)
    }

    pub(crate) fn string(&mut self, wire: u8) -> Result<String> {
        expect(wire, LEN)?;
        String::from_utf8(self.len_delimited()?.to_vec()).map_err(|_| malformed("a string is not UTF-8"))
    }

    /// Skips a field of an unknown number (forward compatibility, as protobuf wants).
    pub(crate) fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.fixed32().map(drop),
            other => Err(malformed(format!("wire type {other} is not read here"))),
        }
    }

    /// A repeated varint field, packed (one length-delimited run) or not (one value).
    pub(crate) fn varints(&mut self, wire: u8, out: &mut Vec<u64>) -> Result<()> {
        match wire {
            VARINT => out.push(self.varint()?),
            LEN => {
                let mut packed = Reader::new(self.len_delimited()?);
                while !packed.buf.is_empty() {
                    out.push(packed.varint()?);
                }
            }
            other => return Err(malformed(format!("a repeated integer field has wire type {other}"))),
        }
        Ok(())
    }

    /// A repeated fixed-size field, packed or not, as its raw little-endian values.
    pub(crate) fn fixed<const N: usize>(&mut self, wire: u8, out: &mut Vec<[u8; N]>) -> Result<()> {
        let single = if N == 4 { FIXED32 } else { FIXED64 };
        if wire == single {
            let mut value = [0u8; N];
            let (head, rest) = self.buf.split_at_checked(N).ok_or_else(|| malformed("a fixed-size value is cut short"))?;
            value.copy_from_slice(head);
            self.buf = rest;
            out.push(value);
            return Ok(());
        }
        expect(wire, LEN)?;
        let packed = self.len_delimited()?;
        if packed.len() % N != 0 {
            return Err(malformed("a packed run of fixed-size values has a partial value"));
        }
        out.extend(packed.chunks_exact(N).map(|c| {
            let mut value = [0u8; N];
            value.copy_from_slice(c);
            value
        }));
        Ok(())
    }
}

pub(crate) fn expect(wire: u8, want: u8) -> Result<()> {
    if wire == want { Ok(()) } else { Err(malformed(format!("wire type {wire} where {want} was expected"))) }
}

/// Writes fields of a message.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    pub(crate) fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    pub(crate) fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, LEN);
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    /// A string field; proto3 leaves empty strings out.
    pub(crate) fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    pub(crate) fn bool(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    pub(crate) fn packed_i64(&mut self, field: u32, values: &[i64]) {
        if values.is_empty() {
            return;
        }
        let mut inner = Writer::default();
        for v in values {
            inner.varint(*v as u64);
        }
        self.bytes(field, &inner.buf);
    }

    /// A nested message, written by `fill`.
    pub(crate) fn message(&mut self, field: u32, fill: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        fill(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX, (-1i64) as u64] {
            let mut w = Writer::default();
            w.varint(v);
            assert_eq!(Reader::new(&w.buf).varint(), Ok(v), "{v}");
        }
    }

    #[test]
    fn fields_round_trip_packed_or_not() {
        let mut w = Writer::default();
        w.string(1, "model");
        w.packed_i64(3, &[-1, 8]);
        w.message(5, |m| m.bool(1, true));
        let mut r = Reader::new(&w.buf);
        let (f, wire) = r.key().expect("key").expect("some");
        assert_eq!((f, r.string(wire).expect("string").as_str()), (1, "model"));
        let (f, wire) = r.key().expect("key").expect("some");
        let mut shape = Vec::new();
        r.varints(wire, &mut shape).expect("packed");
        assert_eq!((f, shape.iter().map(|v| *v as i64).collect::<Vec<_>>()), (3, vec![-1, 8]));
        let (f, wire) = r.key().expect("key").expect("some");
        assert_eq!((f, wire), (5, LEN));
        r.skip(wire).expect("skip");
        assert_eq!(r.key(), Ok(None));
        // Unpacked repeated fixed values, one per key.
        let mut w = Writer::default();
        for x in [1.5f32, -2.0] {
            w.key(6, FIXED32);
            w.buf.extend_from_slice(&x.to_le_bytes());
        }
        let mut r = Reader::new(&w.buf);
        let mut values: Vec<[u8; 4]> = Vec::new();
        while let Some((_, wire)) = r.key().expect("key") {
            r.fixed(wire, &mut values).expect("fixed");
        }
        assert_eq!(values.iter().map(|b| f32::from_le_bytes(*b)).collect::<Vec<_>>(), vec![1.5, -2.0]);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [&[0x80u8][..], &[0x0a, 0x05, b'a'], &[0x08; 1], &[0x00, 0x01], &[0x0d, 1, 2], &[0xff; 11]] {
            let mut r = Reader::new(bad);
            let res = (|| -> Result<()> {
                while let Some((_, wire)) = r.key()? {
                    r.skip(wire)?;
                }
                Ok(())
            })();
            assert!(res.is_err(), "{bad:?}");
        }
    }
}
