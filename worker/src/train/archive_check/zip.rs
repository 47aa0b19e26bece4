//! Reads the central directory of the uncompressed zip archives that libtorch writes, with
//! every offset and size checked against the file before it is used.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use super::bytes::Bytes;

const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const LOCAL_HEADER_LEN: u64 = 30;
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// The end record may be followed by a comment of up to 64 KiB.
const MAX_COMMENT: u64 = u16::MAX as u64;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
/// The largest deflated member (TorchScript source, a few kB in a checkpoint) a reader
/// may be asked to inflate.
pub(crate) const MAX_INFLATED: u64 = 16 << 20;
/// A checkpoint's directory lists a few hundred tensors; this is far beyond that.
pub(crate) const MAX_CENTRAL_DIRECTORY: u64 = 16 << 20;

/// One stored (uncompressed) member of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The member's name, e.g. `archive/data.pkl`.
    pub(crate) name: String,
    /// Where the member's bytes start in the file.
    pub(crate) data_offset: u64,
    /// How many bytes it holds once read (inflated, when it is deflated).
    pub(crate) size: u64,
    /// Whether the member is stored as is (else deflated).
    pub(crate) stored: bool,
}

/// Lists the archive's members, refusing anything that points outside the file, a member
/// that is neither stored nor deflated, a deflated one over [`MAX_INFLATED`] bytes or a
/// directory larger than [`MAX_CENTRAL_DIRECTORY`].
pub(crate) fn entries(file: &mut File) -> Result<Vec<Entry>, String> {
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let (directory_offset, directory_len, count) = end_of_central_directory(file, file_len)?;
    if directory_len > MAX_CENTRAL_DIRECTORY {
        return Err(format!(
            "central directory of {directory_len} bytes exceeds the {MAX_CENTRAL_DIRECTORY}-byte limit"
        ));
    }
    let directory = read_at(file, file_len, directory_offset, directory_len)?;
    let mut cursor = Bytes::new(&directory);
    let mut entries = Vec::new();
    for index in 0..count {
        let entry =
            central_entry(&mut cursor).map_err(|e| format!("directory entry {index}: {e}"))?;
        entries.push(locate_data(file, file_len, entry)?);
    }
    Ok(entries)
}

/// A central-directory record before its local header is checked.
struct CentralEntry {
    name: String,
    method: u16,
    compressed: u64,
    uncompressed: u64,
    local_offset: u64,
}

fn end_of_central_directory(file: &mut File, file_len: u64) -> Result<(u64, u64, u64), String> {
    if file_len < EOCD_LEN {
        return Err(format!("{file_len} bytes is too short for a zip archive"));
    }
    let tail_len = file_len.min(EOCD_LEN + MAX_COMMENT);
    let tail = read_at(file, file_len, file_len - tail_len, tail_len)?;
    let at = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&i| u32_at(&tail, i) == Some(EOCD_SIGNATURE))
        .ok_or("no end-of-central-directory record")?;
    let eocd_offset = file_len - tail_len + at as u64;
    // Like libtorch's zip reader, a zip64 locator just before the end record wins over the
    // end record's own fields, saturated or not; libtorch's writer always adds one.
    let locator = eocd_offset
        .checked_sub(ZIP64_LOCATOR_LEN)
        .map(|offset| read_at(file, file_len, offset, ZIP64_LOCATOR_LEN))
        .transpose()?
        .filter(|locator| u32_at(locator, 0) == Some(ZIP64_LOCATOR_SIGNATURE));
    let Some(locator) = locator else {
        let mut record = Bytes::new(&tail[at + 4..]);
        record.skip(6)?; // disk numbers, entries on this disk
        let count = u64::from(record.u16()?);
        let size = u64::from(record.u32()?);
        let offset = u64::from(record.u32()?);
        return Ok((offset, size, count));
    };
    let mut locator = Bytes::new(&locator[4..]);
    locator.skip(4)?; // disk of the zip64 end record
    let zip64_offset = locator.u64()?;
    let zip64 = read_at(file, file_len, zip64_offset, 56)?;
    let mut zip64 = Bytes::new(&zip64);
    if zip64.u32()? != ZIP64_EOCD_SIGNATURE {
        return Err("zip64 locator does not point at a zip64 end record".into());
    }
    zip64.skip(8 + 2 + 2 + 4 + 4 + 8)?; // record size, versions, disks, entries on this disk
    let count = zip64.u64()?;
    let size = zip64.u64()?;
    let offset = zip64.u64()?;
    Ok((offset, size, count))
}

fn central_entry(cursor: &mut Bytes) -> Result<CentralEntry, String> {
    if cursor.u32()? != CENTRAL_SIGNATURE {
        return Err("bad signature".into());
    }
    cursor.skip(6)?; // versions, flags
    let method = cursor.u16()?;
    cursor.skip(8)?; // time, date, crc
    let mut compressed = u64::from(cursor.u32()?);
    let mut uncompressed = u64::from(cursor.u32()?);
    let name_len = usize::from(cursor.u16()?);
    let extra_len = usize::from(cursor.u16()?);
    let comment_len = usize::from(cursor.u16()?);
    cursor.skip(8)?; // disk, attributes
    let mut local_offset = u64::from(cursor.u32()?);
    let name = String::from_utf8_lossy(cursor.take(name_len)?).into_owned();
    let mut extra = Bytes::new(cursor.take(extra_len)?);
    cursor.skip(comment_len)?;
    while extra.remaining() >= 4 {
        let id = extra.u16()?;
        let len = usize::from(extra.u16()?);
        let mut field = Bytes::new(extra.take(len)?);
        if id != ZIP64_EXTRA_ID {
            continue;
        }
        // Zip64 values appear in this order, each only where the 32-bit field is saturated.
        for value in [&mut uncompressed, &mut compressed, &mut local_offset] {
            if *value == u64::from(u32::MAX) {
                *value = field.u64()?;
            }
        }
    }
    Ok(CentralEntry {
        name,
        method,
        compressed,
        uncompressed,
        local_offset,
    })
}

fn locate_data(file: &mut File, file_len: u64, entry: CentralEntry) -> Result<Entry, String> {
    let name = &entry.name;
    let stored = match entry.method {
        METHOD_STORED if entry.compressed != entry.uncompressed => {
            return Err(format!(
                "member `{name}` is stored but claims {} bytes compressed and {} uncompressed",
                entry.compressed, entry.uncompressed
            ))
        }
        METHOD_STORED => true,
        // libtorch deflates the TorchScript source it writes next to the tensors; the reader
        // allocates the claimed uncompressed size before inflating.
        METHOD_DEFLATED if entry.uncompressed > MAX_INFLATED => {
            return Err(format!(
                "member `{name}` claims {} bytes once inflated, over the {MAX_INFLATED}-byte limit",
                entry.uncompressed
            ))
        }
        METHOD_DEFLATED => false,
        method => {
            return Err(format!(
                "member `{name}` uses compression method {method}; checkpoints store or deflate"
            ))
        }
    };
    let header = read_at(file, file_len, entry.local_offset, LOCAL_HEADER_LEN)
        .map_err(|e| format!("member `{name}`: local header: {e}"))?;
    let mut header = Bytes::new(&header);
    if header.u32()? != LOCAL_SIGNATURE {
        return Err(format!("member `{name}`: bad local header signature"));
    }
    header.skip(22)?;
    let name_len = u64::from(header.u16()?);
    let extra_len = u64::from(header.u16()?);
    let data_offset = entry.local_offset + LOCAL_HEADER_LEN + name_len + extra_len;
    if data_offset
        .checked_add(entry.compressed)
        .is_none_or(|end| end > file_len)
    {
        return Err(format!(
            "member `{name}` claims {} bytes at offset {data_offset}, past the file's {file_len} bytes",
            entry.compressed
        ));
    }
    Ok(Entry {
        name: entry.name,
        data_offset,
        size: entry.uncompressed,
        stored,
    })
}

/// Reads `len` bytes at `offset`, refusing ranges past the end of the file.
pub(crate) fn read_at(
    file: &mut File,
    file_len: u64,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, String> {
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(format!(
            "{len} bytes at offset {offset} lie past the file's {file_len} bytes"
        ));
    }
    let mut buffer = vec![0; len as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut buffer))
        .map_err(|e| e.to_string())?;
    Ok(buffer)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}
