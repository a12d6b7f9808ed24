//! The opcode bytes (protocols 0 to 5, including those the machine rejects) and the decoding
//! of the integer and string payloads some of them carry inline.

use super::Value;
use std::sync::Arc;

/// Declares each opcode as a `u8` constant.
macro_rules! opcodes {
    ($($name:ident = $byte:expr,)*) => {
        $(pub const $name: u8 = $byte;)*
    };
}

// The bytes of Python's `pickle` module, protocols 0 to 5.
opcodes! {
    MARK = b'(', STOP = b'.', POP = b'0', POP_MARK = b'1', DUP = b'2',
    FLOAT = b'F', INT = b'I', BININT = b'J', BININT1 = b'K',
    LONG = b'L', BININT2 = b'M', NONE = b'N', PERSID = b'P', BINPERSID = b'Q', REDUCE = b'R',
    STRING = b'S', BINSTRING = b'T', SHORT_BINSTRING = b'U',
    UNICODE = b'V', BINUNICODE = b'X', APPEND = b'a', BUILD = b'b', GLOBAL = b'c',
    DICT = b'd', EMPTY_DICT = b'}', APPENDS = b'e', GET = b'g', BINGET = b'h', INST = b'i', LONG_BINGET = b'j',
    LIST = b'l', EMPTY_LIST = b']', OBJ = b'o', PUT = b'p',
    BINPUT = b'q', LONG_BINPUT = b'r', SETITEM = b's', TUPLE = b't', EMPTY_TUPLE = b')', SETITEMS = b'u',
    BINFLOAT = b'G', PROTO = 0x80,
    NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85,
    TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88,
    NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b, BINBYTES = b'B', SHORT_BINBYTES = b'C', SHORT_BINUNICODE = 0x8c,
    BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f, ADDITEMS = 0x90,
    FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95,
    BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
}

pub(super) fn decode_long(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    // Strip redundant sign-extension bytes, then fit into i64 when possible.
    let mut n = bytes.len();
    while n > 1 && bytes[n - 1] == fill && (bytes[n - 2] & 0x80 != 0) == negative {
        n -= 1;
    }
    if n <= 8 {
        let mut buf = [fill; 8];
        buf[..n].copy_from_slice(&bytes[..n]);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(Arc::from(bytes))
    }
}

pub(super) fn latin1(bytes: &[u8]) -> Arc<str> {
    let s: String = bytes.iter().map(|&b| b as char).collect();
    Arc::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs() {
        assert_eq!(decode_long(&[]), Value::Int(0));
        assert_eq!(decode_long(&[0xff]), Value::Int(-1));
        assert_eq!(decode_long(&[0x80, 0x00]), Value::Int(128));
        assert_eq!(decode_long(&[0xff; 12]), Value::Int(-1));
        assert!(matches!(decode_long(&[1; 10]), Value::BigInt(_)));
    }
}
