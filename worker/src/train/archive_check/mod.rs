//! Checks a checkpoint archive before libtorch reads it.
//!
//! A checkpoint can come from another worker through the coordinator, so its bytes are not
//! trusted. libtorch refuses most damage with an error, but its unpickler believes the
//! length fields inside a pickle: a 3 KB file that claims a 4 GiB string makes it allocate
//! and zero-fill 4 GiB first. This pass reads the zip directory with every offset checked
//! and walks each pickle's opcodes, so such a file is refused having read only its own
//! bytes.

mod bytes;
mod pickle;
mod zip;

use std::fs::File;
use std::path::Path;

/// The largest pickle a checkpoint may hold. Ours hold one small record per tensor (a few
/// hundred bytes each), so even a model with thousands of tensors stays far below this.
pub(crate) const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Refuses an archive whose directory or pickles would make libtorch's reader allocate
/// more than the file holds; says which member and byte offset is at fault.
pub(crate) fn check_file(path: &Path) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    for entry in zip::entries(&mut file)? {
        if !is_pickle(&entry.name) {
            continue;
        }
        if !entry.stored {
            return Err(format!(
                "member `{}` is a deflated pickle; checkpoints store their pickles",
                entry.name
            ));
        }
        if entry.size > MAX_PICKLE_BYTES {
            return Err(format!(
                "member `{}` is a {}-byte pickle, over the {MAX_PICKLE_BYTES}-byte limit",
                entry.name, entry.size
            ));
        }
        let pickle = zip::read_at(&mut file, file_len, entry.data_offset, entry.size)?;
        pickle::check(&pickle).map_err(|e| format!("member `{}`: {e}", entry.name))?;
    }
    Ok(())
}

/// `data.pkl`, `constants.pkl` and the `.debug_pkl` files next to TorchScript code.
fn is_pickle(name: &str) -> bool {
    name.ends_with(".pkl") || name.ends_with(".debug_pkl")
}
