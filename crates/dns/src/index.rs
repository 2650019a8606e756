//! The names `crate::direct` answers, packed for its hot path: every name of the zone with its addresses in one
//! byte arena, found through an open-addressing array of 8-byte slots (a tag of the name's hash and the offset of
//! its entry). A lookup reads one or two slots and one arena entry; the table's `HashMap<Box<str>, Node>` read a
//! bucket, the key's own allocation and the records' (about 15 % of weft dns's time under load went to that hash
//! probe and key compare, mostly cache misses on a 10,000-Service table).

use foldhash::fast::FixedState;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An arbitrary fixed seed: the same hash for the same name in every process.
const SEED: u64 = 0x5eed_d45e_ed5e_ed00;

/// Entry flag: the name owns something the direct path does not answer (a CNAME, or more addresses of one
/// family than an entry counts), so its questions take the general path.
const GENERAL: u8 = 1;

/// One name's entry, as `Index::get` finds it.
#[derive(Debug, PartialEq)]
pub struct Entry<'a> {
    /// The name's questions take the general path.
    pub general: bool,
    /// The IPv4 addresses, 4 bytes each, in record order.
    pub v4: &'a [u8],
    /// The IPv6 addresses, 16 bytes each, in record order.
    pub v6: &'a [u8],
}

/// The packed names and their addresses; built once per table.
#[derive(Debug)]
pub struct Index {
    /// Empty (0) or the hash's upper 32 bits above the entry's offset + 1; a power of two long, at most half full.
    slots: Box<[u64]>,
    /// Entries: name length (u8), the name (lowercase, no trailing dot), flags (u8), the number of IPv4 and of IPv6
    /// addresses (u16 each, little-endian), the addresses.
    arena: Box<[u8]>,
    complete: bool,
}

/// Collects the entries of an `Index`.
#[derive(Default)]
pub struct Builder {
    arena: Vec<u8>,
    entries: Vec<(u64, u32)>,
    incomplete: bool,
}

fn hash(name: &[u8]) -> u64 {
    FixedState::with_seed(SEED).hash_one(name)
}

impl Builder {
    /// Adds `name` (lowercase, no trailing dot; each name once) with its addresses; `general` sends its questions
    /// to the general path. A name longer than 255 bytes, or past an arena of 4 GiB, cannot be added: the index
    /// is then incomplete (see `Index::complete`).
    pub fn add(&mut self, name: &str, general: bool, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) {
        let (Ok(len), Ok(offset)) = (u8::try_from(name.len()), u32::try_from(self.arena.len())) else {
            self.incomplete = true;
            return;
        };
        let (n4, n6) = (u16::try_from(v4.len()), u16::try_from(v6.len()));
        let general = general || n4.is_err() || n6.is_err();
        self.arena.push(len);
        self.arena.extend_from_slice(name.as_bytes());
        self.arena.push(if general { GENERAL } else { 0 });
        if general {
            self.arena.extend_from_slice(&[0; 4]);
        } else {
            self.arena.extend_from_slice(&n4.unwrap_or(0).to_le_bytes());
            self.arena.extend_from_slice(&n6.unwrap_or(0).to_le_bytes());
            v4.iter().for_each(|a| self.arena.extend_from_slice(&a.octets()));
            v6.iter().for_each(|a| self.arena.extend_from_slice(&a.octets()));
        }
        self.entries.push((hash(name.as_bytes()), offset));
    }

    pub fn finish(self) -> Index {
        let len = (self.entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![0u64; len].into_boxed_slice();
        let mask = len - 1;
        for (hash, offset) in self.entries {
            let mut i = hash as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = ((hash >> 32) << 32) | (u64::from(offset) + 1);
        }
        Index {
            slots,
            arena: self.arena.into_boxed_slice(),
            complete: !self.incomplete,
        }
    }
}

impl Index {
    /// Whether every name given to the builder is in the index (a name it lacks is then not in the table).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The entry of `name` (lowercase, no trailing dot).
    pub fn get(&self, name: &[u8]) -> Option<Entry<'_>> {
        let hash = hash(name);
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = hash as usize & mask;
        // At most half the slots are used, so an empty one ends every probe.
        loop {
            let slot = *self.slots.get(i)?;
            if slot == 0 {
                return None;
            }
            // The offset is stored plus one (0 marks an empty slot).
            let at = ((slot & 0xffff_ffff) as usize).saturating_sub(1);
            if slot >> 32 == hash >> 32
                && let Some(entry) = self.entry(at, name)
            {
                return Some(entry);
            }
            i = (i + 1) & mask;
        }
    }

    /// The entry at `at` when it is `name`'s.
    fn entry(&self, at: usize, name: &[u8]) -> Option<Entry<'_>> {
        let len = usize::from(*self.arena.get(at)?);
        let at = at + 1;
        if self.arena.get(at..at + len)? != name {
            return None;
        }
        let at = at + len;
        let head = self.arena.get(at..at + 5)?;
        let n4 = usize::from(u16::from_le_bytes([head[1], head[2]])) * 4;
        let n6 = usize::from(u16::from_le_bytes([head[3], head[4]])) * 16;
        let at = at + 5;
        Some(Entry {
            general: head[0] & GENERAL != 0,
            v4: self.arena.get(at..at + n4)?,
            v6: self.arena.get(at + n4..at + n4 + n6)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_found_with_its_addresses() {
        let mut b = Builder::default();
        let names: Vec<String> = (0..5000).map(|i| format!("svc-{i}.bench.svc.cluster.local")).collect();
        for (i, n) in names.iter().enumerate() {
            let v4: Vec<Ipv4Addr> = (0..i % 3).map(|k| Ipv4Addr::from(i as u32 * 4 + k as u32)).collect();
            let v6: Vec<Ipv6Addr> = (0..i % 2).map(|_| Ipv6Addr::from(i as u128)).collect();
            b.add(n, i % 7 == 0, &v4, &v6);
        }
        let index = b.finish();
        for (i, n) in names.iter().enumerate() {
            let e = index.get(n.as_bytes()).unwrap_or_else(|| panic!("{n}"));
            assert_eq!(e.general, i % 7 == 0, "{n}");
            if e.general {
                continue;
            }
            let want4: Vec<u8> = (0..i % 3)
                .flat_map(|k| Ipv4Addr::from(i as u32 * 4 + k as u32).octets())
                .collect();
            assert_eq!(e.v4, want4.as_slice(), "{n}");
            assert_eq!(e.v6.len(), 16 * (i % 2), "{n}");
        }
        for missing in [
            "",
            "svc-5000.bench.svc.cluster.local",
            "svc-1.bench.svc.cluster",
            "cluster.local",
        ] {
            assert_eq!(index.get(missing.as_bytes()), None, "{missing}");
        }
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let index = Builder::default().finish();
        assert!(index.complete());
        assert_eq!(index.get(b"cluster.local"), None);
    }

    #[test]
    fn a_name_too_long_leaves_the_index_incomplete() {
        let mut b = Builder::default();
        b.add(&"a".repeat(256), false, &[], &[]);
        assert!(!b.finish().complete());
    }
}
