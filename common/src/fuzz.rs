//! A small seeded mutation fuzzer on stable Rust, for tests that feed parsers and readers
//! arbitrary and mutated bytes within a time budget (CI runs them like any test).
//!
//! ```
//! use std::time::Duration;
//! use ablate_common::fuzz::Mutator;
//! let seeds: &[&[u8]] = &[b"name = \"x\"\n"];
//! let runs = Mutator::new(7).run(seeds, Duration::from_millis(50), 1_000, |bytes| {
//!     let _ = std::str::from_utf8(bytes);
//! });
//! assert!(runs > 0);
//! ```

use std::time::{Duration, Instant};

/// Seeded byte mutations: flips, insertions, deletions, splices of interesting values.
#[derive(Debug, Clone)]
pub struct Mutator {
    state: u64,
}

/// Byte strings that often break parsers (boundaries, separators, huge numbers).
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\n",
    b"\"",
    b"[",
    b"]]",
    b"=",
    b".",
    b"-1",
    b"nan",
    b"inf",
    b"4294967295",
    b"18446744073709551615",
    b"99999999999999999999999",
    b"1e308",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x08\x03",
    b"\x1f\x8b\x08\x00",
];

impl Mutator {
    /// A mutator with a fixed seed: the same seed gives the same inputs.
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// The next pseudo-random number (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A mutated copy of `input` (1 to 8 mutations), at most `max_len` bytes long.
    pub fn mutate(&mut self, input: &[u8], max_len: usize) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(8) {
            match self.below(7) {
                0 if !out.is_empty() => {
                    let i = self.below(out.len());
                    out[i] ^= 1 << self.below(8);
                }
                1 if !out.is_empty() => {
                    let i = self.below(out.len());
                    out[i] = self.next_u64() as u8;
                }
                2 => {
                    let i = self.below(out.len() + 1);
                    let value = INTERESTING[self.below(INTERESTING.len())];
                    out.splice(i..i, value.iter().copied());
                }
                3 if !out.is_empty() => {
                    let start = self.below(out.len());
                    let end = (start + 1 + self.below(16)).min(out.len());
                    out.drain(start..end);
                }
                4 if !out.is_empty() => {
                    // Duplicate a chunk (repeated keys, tables, records).
                    let start = self.below(out.len());
                    let end = (start + 1 + self.below(64)).min(out.len());
                    let chunk = out[start..end].to_vec();
                    let at = self.below(out.len() + 1);
                    out.splice(at..at, chunk);
                }
                5 => {
                    let cut = self.below(out.len() + 1);
                    out.truncate(cut);
                }
                _ => {
                    let n = 1 + self.below(8);
                    for _ in 0..n {
                        out.push(self.next_u64() as u8);
                    }
                }
            }
        }
        out.truncate(max_len);
        out
    }

    /// Calls `check` on random bytes and on mutations of `seeds` until `budget` has passed
    /// or `max_runs` inputs were tried; returns how many were tried. A panic in `check`
    /// fails the calling test; the input is printed first (hex, up to 256 bytes).
    pub fn run(
        &mut self,
        seeds: &[&[u8]],
        budget: Duration,
        max_runs: usize,
        mut check: impl FnMut(&[u8]),
    ) -> usize {
        let started = Instant::now();
        let max_len = seeds.iter().map(|s| s.len()).max().unwrap_or(0) * 2 + 64;
        let mut runs = 0;
        while runs < max_runs && (runs < 8 || started.elapsed() < budget) {
            let input = if seeds.is_empty() || self.below(10) == 0 {
                let n = self.below(max_len);
                (0..n).map(|_| self.next_u64() as u8).collect()
            } else {
                let seed = seeds[self.below(seeds.len())];
                self.mutate(seed, max_len)
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
            if let Err(panic) = outcome {
                let shown: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
                eprintln!("fuzz input that panicked ({} bytes): {shown}", input.len());
                std::panic::resume_unwind(panic);
            }
            runs += 1;
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let a = Mutator::new(3).mutate(b"hello world", 100);
        let b = Mutator::new(3).mutate(b"hello world", 100);
        assert_eq!(a, b);
        assert!(Mutator::new(3).mutate(&[0; 50], 10).len() <= 10);
    }
}
