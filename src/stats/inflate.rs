//! A small, bounded zlib inflater (RFC 1950/1951, after Mark Adler's `puff.c`) for reading
//! HdrHistogram's V2 deflate encoding from files netforge did not necessarily write.
//!
//! hdrhistogram's own deserializer trusts the payload length inside the compressed stream and
//! allocates it before reading (up to 4 GiB for a 30-byte input). Inflating here first, with a
//! hard output cap, lets [`super::hist`] check that length against the bytes that really are
//! there before handing the uncompressed form to the crate.

/// Why a stream did not inflate.
pub type Error = &'static str;

const MAX_BITS: usize = 15;

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    bit_buf: u32,
    bit_cnt: u32,
}

impl Bits<'_> {
    fn bits(&mut self, need: u32) -> Result<u32, Error> {
        let mut val = self.bit_buf;
        while self.bit_cnt < need {
            let b = *self.data.get(self.pos).ok_or("deflate stream ends early")?;
            self.pos += 1;
            val |= u32::from(b) << self.bit_cnt;
            self.bit_cnt += 8;
        }
        self.bit_buf = if need >= 32 { 0 } else { val >> need };
        self.bit_cnt -= need;
        Ok(if need >= 32 { val } else { val & ((1u32 << need) - 1) })
    }
}

/// Canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Huffman {
    count: [u16; MAX_BITS + 1],
    symbol: Vec<u16>,
}

impl Huffman {
    /// Builds the code from per-symbol lengths; refuses an over-subscribed set (an incomplete
    /// one is allowed: its unused codes fail when met).
    fn new(lengths: &[u8]) -> Result<Huffman, Error> {
        let mut count = [0u16; MAX_BITS + 1];
        for &l in lengths {
            count[l as usize] += 1;
        }
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err("over-subscribed Huffman code");
            }
        }
        let mut offs = [0u16; MAX_BITS + 2];
        for len in 1..=MAX_BITS {
            offs[len + 1] = offs[len] + count[len];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[offs[l as usize] as usize] = sym as u16;
                offs[l as usize] += 1;
            }
        }
        Ok(Huffman { count, symbol })
    }

    fn decode(&self, s: &mut Bits<'_>) -> Result<u16, Error> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=MAX_BITS {
            code |= s.bits(1)? as i32;
            let count = i32::from(self.count[len]);
            if code - count < first {
                return Ok(self.symbol[(index + (code - first)) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("invalid Huffman code")
    }
}

const LBASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEXT: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DBASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
const DEXT: [u8; 30] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];

fn codes(s: &mut Bits<'_>, out: &mut Vec<u8>, cap: usize, lit: &Huffman, dist: &Huffman) -> Result<(), Error> {
    loop {
        let sym = lit.decode(s)?;
        match sym {
            0..=255 => {
                if out.len() >= cap {
                    return Err("inflates past the size limit");
                }
                out.push(sym as u8);
            }
            256 => return Ok(()),
            _ => {
                let i = usize::from(sym - 257);
                if i >= LBASE.len() {
                    return Err("invalid length code");
                }
                let len = usize::from(LBASE[i]) + s.bits(u32::from(LEXT[i]))? as usize;
                let d = usize::from(dist.decode(s)?);
                if d >= DBASE.len() {
                    return Err("invalid distance code");
                }
                let back = usize::from(DBASE[d]) + s.bits(u32::from(DEXT[d]))? as usize;
                if back > out.len() {
                    return Err("distance too far back");
                }
                if out.len() + len > cap {
                    return Err("inflates past the size limit");
                }
                let start = out.len() - back;
                for k in 0..len {
                    let b = out[start + k];
                    out.push(b);
                }
            }
        }
    }
}

fn fixed() -> (Huffman, Huffman) {
    let mut l = [0u8; 288];
    l[..144].fill(8);
    l[144..256].fill(9);
    l[256..280].fill(7);
    l[280..].fill(8);
    let lit = Huffman::new(&l).unwrap_or_else(|_| unreachable!("the fixed code is complete"));
    let dist = Huffman::new(&[5u8; 30]).unwrap_or_else(|_| unreachable!("the fixed code is complete"));
    (lit, dist)
}

fn dynamic(s: &mut Bits<'_>) -> Result<(Huffman, Huffman), Error> {
    const ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
    let nlen = s.bits(5)? as usize + 257;
    let ndist = s.bits(5)? as usize + 1;
    let ncode = s.bits(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return Err("bad code counts");
    }
    let mut lengths = [0u8; 320];
    for &o in &ORDER[..ncode] {
        lengths[o] = s.bits(3)? as u8;
    }
    let lencode = Huffman::new(&lengths[..19])?;
    let mut lengths = [0u8; 320];
    let mut i = 0;
    while i < nlen + ndist {
        let sym = lencode.decode(s)?;
        if sym < 16 {
            lengths[i] = sym as u8;
            i += 1;
            continue;
        }
        let (val, rep) = match sym {
            16 => {
                if i == 0 {
                    return Err("repeat with no first length");
                }
                (lengths[i - 1], 3 + s.bits(2)? as usize)
            }
            17 => (0, 3 + s.bits(3)? as usize),
            _ => (0, 11 + s.bits(7)? as usize),
        };
        if i + rep > nlen + ndist {
            return Err("too many lengths");
        }
        lengths[i..i + rep].fill(val);
        i += rep;
    }
    if lengths[256] == 0 {
        return Err("no end-of-block code");
    }
    Ok((Huffman::new(&lengths[..nlen])?, Huffman::new(&lengths[nlen..nlen + ndist])?))
}

/// Inflates a raw deflate stream; returns the output and the bytes consumed.
fn inflate_raw(data: &[u8], cap: usize) -> Result<(Vec<u8>, usize), Error> {
    let mut s = Bits { data, pos: 0, bit_buf: 0, bit_cnt: 0 };
    let mut out = Vec::new();
    loop {
        let last = s.bits(1)? == 1;
        match s.bits(2)? {
            0 => {
                s.bit_buf = 0;
                s.bit_cnt = 0;
                let hdr = data.get(s.pos..s.pos + 4).ok_or("deflate stream ends early")?;
                let len = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
                if u16::from_le_bytes([hdr[2], hdr[3]]) != !(len as u16) {
                    return Err("stored block length does not match its complement");
                }
                s.pos += 4;
                let block = data.get(s.pos..s.pos + len).ok_or("deflate stream ends early")?;
                if out.len() + len > cap {
                    return Err("inflates past the size limit");
                }
                out.extend_from_slice(block);
                s.pos += len;
            }
            1 => {
                let (l, d) = fixed();
                codes(&mut s, &mut out, cap, &l, &d)?;
            }
            2 => {
                let (l, d) = dynamic(&mut s)?;
                codes(&mut s, &mut out, cap, &l, &d)?;
            }
            _ => return Err("invalid block type"),
        }
        if last {
            return Ok((out, s.pos));
        }
    }
}

/// Adler-32, for tests that build zlib streams by hand.
#[cfg(test)]
pub(crate) fn tests_adler32(data: &[u8]) -> u32 {
    adler32(data)
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    b << 16 | a
}

/// Inflates a zlib stream (RFC 1950) of at most `cap` bytes of output, checking its Adler-32.
pub fn zlib(data: &[u8], cap: usize) -> Result<Vec<u8>, Error> {
    let [cmf, flg, ..] = *data else { return Err("zlib stream too short") };
    if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
        return Err("not a zlib stream");
    }
    if flg & 0x20 != 0 {
        return Err("zlib preset dictionary not supported");
    }
    let (out, used) = inflate_raw(&data[2..], cap)?;
    let tail = data.get(2 + used..2 + used + 4).ok_or("zlib stream ends before its checksum")?;
    if u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]) != adler32(&out) {
        return Err("zlib checksum mismatch");
    }
    Ok(out)
}

/// A zlib bomb, for tests: one fixed-code block of a literal 0 and then length-258,
/// distance-1 matches, 13 bits each, so that it inflates to about `out` bytes of zeros (about
/// 1,000 to 1) — deflate's largest ratio. The checksum is that of the whole output.
#[cfg(test)]
pub(crate) fn tests_bomb(out: usize) -> Vec<u8> {
    let mut z = vec![0x78, 0x01];
    let (mut acc, mut n) = (0u64, 0u32);
    let mut put = |z: &mut Vec<u8>, v: u32, bits: u32| {
        acc |= u64::from(v) << n;
        n += bits;
        while n >= 8 {
            z.push(acc as u8);
            acc >>= 8;
            n -= 8;
        }
    };
    // Huffman codes go most significant bit first.
    let code = |c: u32, len: u32| c.reverse_bits() >> (32 - len);
    put(&mut z, 1, 1); // BFINAL
    put(&mut z, 1, 2); // BTYPE 01: the fixed code
    put(&mut z, code(0x30, 8), 8); // literal 0
    for _ in 0..out.saturating_sub(1) / 258 {
        put(&mut z, code(0xc5, 8), 8); // length code 285: 258 bytes
        put(&mut z, 0, 5); // distance code 0: 1 back
    }
    put(&mut z, 0, 7); // end of block (256)
    put(&mut z, 0, 7); // flush
    let zeros = 1 + out.saturating_sub(1) / 258 * 258;
    // Adler-32 of n zeros: a stays 1, b adds it n times.
    z.extend_from_slice(&(((zeros % 65521) as u32) << 16 | 1).to_be_bytes());
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bomb stops at the cap: the output never grows past it, however far the stream goes.
    #[test]
    fn a_bomb_stops_at_the_cap() {
        let small = tests_bomb(100_000);
        assert_eq!(zlib(&small, 1 << 20).unwrap(), vec![0; 1 + 99_999 / 258 * 258], "the bomb is a real stream");
        let bomb = tests_bomb(1 << 30);
        assert!(bomb.len() < 7 << 20, "{} bytes for 1 GiB", bomb.len());
        assert_eq!(zlib(&bomb, 4 << 20).unwrap_err(), "inflates past the size limit");
    }

    #[test]
    fn stored_fixed_and_refusals() {
        // zlib of "hello" with a stored block, and with the fixed code (as zlib -1 writes it).
        let stored = [0x78, 0x01, 0x01, 0x05, 0x00, 0xfa, 0xff, b'h', b'e', b'l', b'l', b'o', 0x06, 0x2c, 0x02, 0x15];
        assert_eq!(zlib(&stored, 100).unwrap(), b"hello");
        let fixed = [0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x06, 0x2c, 0x02, 0x15];
        assert_eq!(zlib(&fixed, 100).unwrap(), b"hello");
        assert_eq!(zlib(&fixed, 4).unwrap_err(), "inflates past the size limit");
        let mut bad = fixed;
        bad[12] ^= 1;
        assert_eq!(zlib(&bad, 100).unwrap_err(), "zlib checksum mismatch");
        assert_eq!(zlib(&fixed[..6], 100).unwrap_err(), "deflate stream ends early");
        assert_eq!(zlib(&[0x12, 0x34, 0], 100).unwrap_err(), "not a zlib stream");
        assert_eq!(zlib(&[], 100).unwrap_err(), "zlib stream too short");
    }
}
