//! Builders for hand-made pickles and zip archives, shared by the checkpoint-reader tests.
#![allow(dead_code)]

/// Emits pickle opcodes.
#[derive(Default)]
pub struct P(pub Vec<u8>);

impl P {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    pub fn proto(mut self, v: u8) -> Self {
        self.0.extend([0x80, v]);
        self
    }
    pub fn op(mut self, op: u8) -> Self {
        self.0.push(op);
        self
    }
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    pub fn int(mut self, v: i32) -> Self {
        self.0.push(b'J');
        self.0.extend(v.to_le_bytes());
        self
    }
    pub fn long(mut self, v: i64) -> Self {
        self.0.extend([0x8a, 8]);
        self.0.extend(v.to_le_bytes());
        self
    }
    pub fn str(mut self, s: &str) -> Self {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.push(b'B');
        self.0.extend((b.len() as u32).to_le_bytes());
        self.0.extend(b);
        self
    }
    pub fn global(mut self, module: &str, name: &str) -> Self {
        self.0.push(b'c');
        self.0.extend(module.as_bytes());
        self.0.push(b'\n');
        self.0.extend(name.as_bytes());
        self.0.push(b'\n');
        self
    }
    pub fn mark(self) -> Self {
        self.op(b'(')
    }
    pub fn tuple(self) -> Self {
        self.op(b't')
    }
    pub fn empty_tuple(self) -> Self {
        self.op(b')')
    }
    pub fn empty_dict(self) -> Self {
        self.op(b'}')
    }
    pub fn empty_list(self) -> Self {
        self.op(b']')
    }
    pub fn reduce(self) -> Self {
        self.op(b'R')
    }
    pub fn setitem(self) -> Self {
        self.op(b's')
    }
    pub fn setitems(self) -> Self {
        self.op(b'u')
    }
    pub fn append(self) -> Self {
        self.op(b'a')
    }
    pub fn none(self) -> Self {
        self.op(b'N')
    }
    pub fn binput(mut self, k: u8) -> Self {
        self.0.extend([b'q', k]);
        self
    }
    pub fn binget(mut self, k: u8) -> Self {
        self.0.extend([b'h', k]);
        self
    }
    pub fn stop(self) -> Self {
        self.op(b'.')
    }
    pub fn bytes_vec(self) -> Vec<u8> {
        self.0
    }

    /// A torch storage persistent id `('storage', torch.<class>, key, 'cpu', numel)` + BINPERSID.
    pub fn storage(self, class: &str, key: &str, numel: i64) -> Self {
        self.mark().str("storage").global("torch", class).str(key).str("cpu").long(numel).tuple().op(b'Q')
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    pub fn tensor(self, class: &str, key: &str, numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Self {
        let mut p =
            self.global("torch._utils", "_rebuild_tensor_v2").mark().storage(class, key, numel).long(offset).mark();
        for &s in size {
            p = p.long(s);
        }
        p = p.tuple().mark();
        for &s in stride {
            p = p.long(s);
        }
        p.tuple().op(0x89).global("collections", "OrderedDict").empty_tuple().reduce().tuple().reduce()
    }
}

/// A zip archive of stored (uncompressed) members, as torch writes them.
pub fn zip_stored(members: &[(&str, &[u8])]) -> Vec<u8> {
    let members: Vec<Member> = members
        .iter()
        .map(|&(name, data)| Member { name, data, deflate: false, declared_size: None, zip64: false })
        .collect();
    zip(&members)
}

/// One member for [`zip`].
pub struct Member<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    /// Compress with deflate (method 8) instead of storing.
    pub deflate: bool,
    /// Uncompressed size to declare instead of the real one.
    pub declared_size: Option<u32>,
    /// Put sizes and offset in a zip64 extra field of the central directory (0xffffffff in
    /// the 32-bit fields), as writers do past 4 GiB.
    pub zip64: bool,
}

/// A zip archive of `members`.
pub fn zip(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for m in members {
        let name = m.name;
        let crc = crc32fast::hash(m.data);
        let compressed;
        let (data, method): (&[u8], u16) = if m.deflate {
            compressed = miniz_oxide::deflate::compress_to_vec(m.data, 6);
            (&compressed, 8)
        } else {
            (m.data, 0)
        };
        let size = m.declared_size.unwrap_or(m.data.len() as u32);
        let offset = out.len() as u32;
        let header = |sig: u32| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            h
        };
        let mut local = header(0x0403_4b50);
        local.extend(20u16.to_le_bytes()); // version needed
        local.extend(0u16.to_le_bytes()); // flags
        local.extend(method.to_le_bytes());
        local.extend(0u32.to_le_bytes()); // time, date
        local.extend(crc.to_le_bytes());
        local.extend((data.len() as u32).to_le_bytes());
        local.extend(size.to_le_bytes());
        local.extend((name.len() as u16).to_le_bytes());
        local.extend(0u16.to_le_bytes());
        local.extend(name.as_bytes());
        out.extend(local);
        out.extend_from_slice(data);

        let mut c = header(0x0201_4b50);
        c.extend(20u16.to_le_bytes()); // made by
        c.extend(20u16.to_le_bytes()); // needed
        c.extend(0u16.to_le_bytes()); // flags
        c.extend(method.to_le_bytes());
        c.extend(0u32.to_le_bytes()); // time, date
        c.extend(crc.to_le_bytes());
        let mut extra = Vec::new();
        if m.zip64 {
            c.extend(u32::MAX.to_le_bytes());
            c.extend(u32::MAX.to_le_bytes());
            extra.extend(1u16.to_le_bytes());
            extra.extend(24u16.to_le_bytes());
            extra.extend((size as u64).to_le_bytes());
            extra.extend((data.len() as u64).to_le_bytes());
            extra.extend((offset as u64).to_le_bytes());
        } else {
            c.extend((data.len() as u32).to_le_bytes());
            c.extend(size.to_le_bytes());
        }
        c.extend((name.len() as u16).to_le_bytes());
        c.extend((extra.len() as u16).to_le_bytes());
        c.extend([0u8; 2 + 2 + 2 + 4]); // comment, disk, internal, external
        c.extend((if m.zip64 { u32::MAX } else { offset }).to_le_bytes());
        c.extend(name.as_bytes());
        c.extend(extra);
        central.extend(c);
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]); // disk numbers
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A `torch.save`-style archive with `archive/data.pkl` and the given storages.
pub fn torch_zip(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let names: Vec<String> = storages.iter().map(|(k, _)| format!("archive/data/{k}")).collect();
    let mut members: Vec<(&str, &[u8])> = vec![("archive/data.pkl", pickle), ("archive/byteorder", b"little")];
    for (name, (_, data)) in names.iter().zip(storages) {
        members.push((name.as_str(), data));
    }
    zip_stored(&members)
}

/// little-endian f32 bytes
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
