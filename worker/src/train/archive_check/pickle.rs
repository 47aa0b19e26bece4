//! Walks a pickle's opcodes without building anything, refusing the length and memo fields
//! that would make an unpickler allocate far more than the pickle holds.
//!
//! libtorch's unpickler trusts a string's length prefix (it allocates and zero-fills that
//! many bytes before it notices the archive ends) and grows its memo table to whatever
//! index a `PUT` names. A pickle that a real writer produced never does either: every
//! length fits in the bytes that follow, and memo indices are handed out densely.

use super::bytes::Bytes;

/// Checks every opcode of `pickle` up to `STOP`.
pub(crate) fn check(pickle: &[u8]) -> Result<(), String> {
    let mut walk = Walk {
        bytes: Bytes::new(pickle),
        memo_len: 0,
    };
    loop {
        let at = pickle.len() - walk.bytes.remaining();
        let op = walk
            .bytes
            .u8()
            .map_err(|_| "ends without a STOP opcode".to_string())?;
        match walk.step(op) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => return Ok(()),
            Err(e) => return Err(format!("opcode 0x{op:02x} at byte {at}: {e}")),
        }
    }
}

enum Flow {
    Continue,
    Stop,
}

struct Walk<'a> {
    bytes: Bytes<'a>,
    /// Entries a faithful unpickler's memo table would hold at this point.
    memo_len: u64,
}

impl Walk<'_> {
    fn step(&mut self, op: u8) -> Result<Flow, String> {
        match op {
            b'.' => return Ok(Flow::Stop),
            // No argument.
            b'(' | b'0' | b'1' | b'2' | b'N' | b'Q' | b'R' | b'a' | b'b' | b'd' | b'}' | b'e'
            | b'l' | b']' | b'o' | b's' | b't' | b')' | b'u' | 0x81 | 0x85 | 0x86 | 0x87 | 0x88
            | 0x89 | 0x8f | 0x90 | 0x91 | 0x92 | 0x93 | 0x97 | 0x98 => {}
            // Fixed-size arguments.
            b'K' | 0x80 | 0x82 => self.bytes.skip(1)?,
            b'M' | 0x83 => self.bytes.skip(2)?,
            b'J' | 0x84 => self.bytes.skip(4)?,
            b'G' => self.bytes.skip(8)?,
            // One line of text.
            b'F' | b'I' | b'L' | b'P' | b'S' | b'V' => {
                self.bytes.line()?;
            }
            // Two lines of text (module and name).
            b'c' | b'i' => {
                self.bytes.line()?;
                self.bytes.line()?;
            }
            // Length-prefixed data.
            b'U' | b'C' | 0x8c | 0x8a => self.sized(1)?,
            b'T' | b'X' | b'B' | 0x8b => self.sized(4)?,
            0x8d | 0x8e | 0x96 | 0x95 => self.sized(8)?,
            // Memo writes and reads.
            b'p' => {
                let id = text_index(self.bytes.line()?)?;
                self.put(id)?;
            }
            b'q' => {
                let id = u64::from(self.bytes.u8()?);
                self.put(id)?;
            }
            b'r' => {
                let id = u64::from(self.bytes.u32()?);
                self.put(id)?;
            }
            0x94 => self.memo_len += 1,
            b'g' => {
                let id = text_index(self.bytes.line()?)?;
                self.get(id)?;
            }
            b'h' => {
                let id = u64::from(self.bytes.u8()?);
                self.get(id)?;
            }
            b'j' => {
                let id = u64::from(self.bytes.u32()?);
                self.get(id)?;
            }
            _ => return Err("not a pickle opcode".into()),
        }
        Ok(Flow::Continue)
    }

    /// A length of `width` bytes, then that many bytes, which must all be present.
    fn sized(&mut self, width: usize) -> Result<(), String> {
        let len = match width {
            1 => u64::from(self.bytes.u8()?),
            4 => u64::from(self.bytes.u32()?),
            _ => self.bytes.u64()?,
        };
        let remaining = self.bytes.remaining() as u64;
        if len > remaining {
            return Err(format!(
                "claims {len} bytes of data, only {remaining} remain in the pickle"
            ));
        }
        self.bytes.skip(len as usize)
    }

    fn put(&mut self, id: u64) -> Result<(), String> {
        if id > self.memo_len {
            return Err(format!(
                "memo index {id} skips ahead of the {} entries so far",
                self.memo_len
            ));
        }
        self.memo_len = self.memo_len.max(id + 1);
        Ok(())
    }

    fn get(&self, id: u64) -> Result<(), String> {
        if id >= self.memo_len {
            return Err(format!(
                "memo index {id} was never written ({} entries)",
                self.memo_len
            ));
        }
        Ok(())
    }
}

fn text_index(line: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| "memo index is not a number".to_string())
}

#[cfg(test)]
mod tests {
    use super::check;

    /// `pickle.dumps({"a": [1, "xy"]}, protocol=2)`, written out by hand.
    const SMALL: &[u8] =
        b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01X\x02\x00\x00\x00xyq\x03es.";

    #[test]
    fn a_real_pickle_passes() {
        check(SMALL).unwrap();
    }

    #[test]
    fn a_planted_string_length_is_refused() {
        let mut bytes = SMALL.to_vec();
        bytes[6..10].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        let err = check(&bytes).unwrap_err();
        assert!(err.contains("claims 2147483647 bytes"), "{err}");
    }

    #[test]
    fn a_memo_index_far_ahead_is_refused() {
        let mut bytes = SMALL.to_vec();
        // `q\x00` -> `r` with a 4-byte index would change the length; plant a far BINPUT.
        bytes[4] = 0x50;
        let err = check(&bytes).unwrap_err();
        assert!(err.contains("memo index 80"), "{err}");
    }

    #[test]
    fn truncation_and_garbage_are_refused() {
        assert!(check(&SMALL[..SMALL.len() - 1])
            .unwrap_err()
            .contains("STOP"));
        assert!(check(b"\x80\x02\xff.")
            .unwrap_err()
            .contains("not a pickle opcode"));
        assert!(check(b"\x80\x02h\x00.")
            .unwrap_err()
            .contains("never written"));
    }
}
