//! C2SP tlog-tiles: tile coordinates and paths, tile contents, and entry bundles.
//!
//! A tile at level `L`, index `N` holds up to 256 hashes of tree level `8·L`: those of indexes
//! `N·256 .. N·256+width`. A partial tile (`width < 256`) is served under `.p/<width>`.

use crate::Error;
use crate::merkle::{Hash, HashReader};

/// Hashes per full tile.
pub const WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const HEIGHT: u8 = 8;
/// The longest entry an entry bundle can hold (uint16 length prefix).
pub const MAX_ENTRY: usize = 65_535;

/// A tile (`level` 0..=63) or an entry bundle (`level` = `None`), with its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Tile level, or `None` for an entry bundle.
    pub level: Option<u8>,
    /// Tile index.
    pub index: u64,
    /// Number of hashes (or entries), 1..=256.
    pub width: u16,
}

/// `1234067` → `x001/x234/067`.
pub fn encode_index(n: u64) -> String {
    let mut groups = Vec::new();
    let mut rest = n;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g:03}")
            } else {
                format!("{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn decode_index(elements: &[&str]) -> Result<u64, Error> {
    let bad = || Error::Tile(format!("`{}` is not a tile index", elements.join("/")));
    let (last, init) = elements.split_last().ok_or_else(bad)?;
    let mut n: u64 = 0;
    for e in init {
        let digits = e.strip_prefix('x').ok_or_else(bad)?;
        n = n.checked_mul(1000).ok_or_else(bad)?;
        n = n
            .checked_add(three_digits(digits).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    n = n.checked_mul(1000).ok_or_else(bad)?;
    n = n
        .checked_add(three_digits(last).ok_or_else(bad)?)
        .ok_or_else(bad)?;
    // Only the canonical spelling (no `x000/` groups in front).
    if encode_index(n) != elements.join("/") {
        return Err(bad());
    }
    Ok(n)
}

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl Tile {
    /// The path under the log's prefix, e.g. `tile/0/x001/x234/067.p/8`.
    pub fn path(&self) -> String {
        let level = match self.level {
            Some(l) => l.to_string(),
            None => "entries".to_owned(),
        };
        let mut p = format!("tile/{level}/{}", encode_index(self.index));
        if u64::from(self.width) < WIDTH {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Parses a path as written by [`Tile::path`] (without a leading `/`).
    pub fn parse(path: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Tile(format!("`{path}`: {why}"));
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("a tile path starts with `tile/`"))?;
        let (level, rest) = rest
            .split_once('/')
            .ok_or_else(|| bad("missing the tile index"))?;
        let level = match level {
            "entries" => None,
            l => {
                let n: u8 = l
                    .parse()
                    .ok()
                    .filter(|n| {
                        *n <= 63
                            && l.bytes().all(|b| b.is_ascii_digit())
                            && (l == "0" || !l.starts_with('0'))
                    })
                    .ok_or_else(|| bad("the level must be 0..63 or `entries`"))?;
                Some(n)
            }
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let canonical =
                    !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) && !w.starts_with('0');
                let width = w
                    .parse::<u16>()
                    .ok()
                    .filter(|w| canonical && (1..WIDTH as u16).contains(w))
                    .ok_or_else(|| bad("a partial width is 1..255"))?;
                (i, width)
            }
            None => (rest, WIDTH as u16),
        };
        let elements: Vec<&str> = index_part.split('/').collect();
        let index = decode_index(&elements).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            level,
            index,
            width,
        })
    }
}

/// The width of the right-most tile at `level` for a tree of `size` entries (0: no partial
/// tile).
pub fn partial_width(size: u64, level: u8) -> u16 {
    let shift = u32::from(level) * u32::from(HEIGHT);
    if shift >= 64 {
        return 0;
    }
    ((size >> shift) % WIDTH) as u16
}

/// The tile at `level` that holds tree-level-`8·level` hash `index`, as far as a tree of `size`
/// entries has it.
pub fn tile_for(level: u8, index: u64, size: u64) -> Option<Tile> {
    let shift = u32::from(level) * u32::from(HEIGHT);
    if shift >= 64 {
        return None;
    }
    let hashes_at_level = size >> shift;
    if index >= hashes_at_level {
        return None;
    }
    let n = index / WIDTH;
    let width = (hashes_at_level - n * WIDTH).min(WIDTH) as u16;
    Some(Tile {
        level: Some(level),
        index: n,
        width,
    })
}

/// The contents of a hash tile: `width` hashes of 32 bytes.
pub fn read_tile(tile: &Tile, r: &(impl HashReader + ?Sized)) -> Result<Vec<u8>, Error> {
    let level = tile
        .level
        .ok_or_else(|| Error::Tile("an entry bundle is not a hash tile".into()))?;
    let mut out = Vec::with_capacity(usize::from(tile.width) * 32);
    for i in 0..u64::from(tile.width) {
        out.extend_from_slice(&r.hash(level * HEIGHT, tile.index * WIDTH + i)?.0);
    }
    Ok(out)
}

/// Reads the hash at tree `level`, `index` out of tile data: `tile(L, N)` returns the bytes of
/// tile level `L`, index `N` (full or partial). Levels between tile levels are computed from the
/// tile below them.
pub fn hash_from_tiles(
    level: u8,
    index: u64,
    tile: &mut impl FnMut(u8, u64) -> Result<Vec<u8>, Error>,
) -> Result<Hash, Error> {
    let tile_level = level / HEIGHT;
    let r = level % HEIGHT;
    // The 2^r hashes at the tile's base level that make up this one.
    let first = index << r;
    let count = 1u64 << r;
    let data = tile(tile_level, first / WIDTH)?;
    let start = usize::try_from((first % WIDTH) * 32).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(count * 32).unwrap_or(usize::MAX));
    let slice = data.get(start..end).ok_or_else(|| {
        Error::Tile(format!(
            "tile {tile_level}/{} is too short for hash ({level}, {index})",
            first / WIDTH
        ))
    })?;
    let mut hashes: Vec<Hash> = slice
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            Hash(h)
        })
        .collect();
    while hashes.len() > 1 {
        hashes = hashes
            .chunks_exact(2)
            .map(|p| crate::merkle::node_hash(&p[0], &p[1]))
            .collect();
    }
    hashes.pop().ok_or_else(|| Error::Tile("empty tile".into()))
}

/// A [`HashReader`] over tiles fetched on demand (from a server, a cache, a directory) for a
/// tree of `size` entries: each tile is fetched once, at the width that tree has.
pub struct TileReader<F> {
    size: u64,
    fetch: std::cell::RefCell<F>,
    cache: std::cell::RefCell<std::collections::HashMap<(u8, u64), Vec<u8>>>,
}

impl<F> std::fmt::Debug for TileReader<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<F: FnMut(&Tile) -> Result<Vec<u8>, Error>> TileReader<F> {
    /// Reads the tree of `size` entries through `fetch(tile)`, which returns the tile's bytes.
    pub fn new(size: u64, fetch: F) -> Self {
        Self {
            size,
            fetch: std::cell::RefCell::new(fetch),
            cache: std::cell::RefCell::new(std::collections::HashMap::new()),
        }
    }
}

impl<F: FnMut(&Tile) -> Result<Vec<u8>, Error>> HashReader for TileReader<F> {
    fn hash(&self, level: u8, index: u64) -> Result<Hash, Error> {
        let mut get = |tile_level: u8, n: u64| -> Result<Vec<u8>, Error> {
            if let Some(t) = self.cache.borrow().get(&(tile_level, n)) {
                return Ok(t.clone());
            }
            let tile = tile_for(tile_level, n * WIDTH, self.size).ok_or_else(|| {
                Error::Tile(format!(
                    "tile {tile_level}/{n} is beyond a tree of size {}",
                    self.size
                ))
            })?;
            let data = (self.fetch.borrow_mut())(&tile)?;
            if data.len() != usize::from(tile.width) * 32 {
                return Err(Error::Tile(format!(
                    "{}: {} bytes, expected {}",
                    tile.path(),
                    data.len(),
                    usize::from(tile.width) * 32
                )));
            }
            self.cache
                .borrow_mut()
                .insert((tile_level, n), data.clone());
            Ok(data)
        };
        hash_from_tiles(level, index, &mut get)
    }
}

/// Encodes entries as an entry bundle (each prefixed by its uint16 big-endian length).
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).map_err(|_| {
            Error::Tile(format!(
                "an entry of {} bytes is longer than {MAX_ENTRY}",
                e.len()
            ))
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries.
pub fn parse_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(Error::Tile(format!(
                "entry bundle truncated after {} entries (a lone length byte)",
                out.len()
            )));
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let body = rest.get(2..2 + len).ok_or_else(|| {
            Error::Tile(format!(
                "entry bundle truncated: entry {} claims {len} bytes, {} remain",
                out.len(),
                rest.len() - 2
            ))
        })?;
        out.push(body);
        rest = &rest[2 + len..];
        if out.len() > WIDTH as usize {
            return Err(Error::Tile(
                "an entry bundle holds at most 256 entries".into(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryTree;

    #[test]
    fn spec_paths() {
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(67), "067");
        assert_eq!(encode_index(1000), "x001/000");
        let t = Tile {
            level: Some(0),
            index: 1234067,
            width: 256,
        };
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        assert_eq!(Tile::parse("tile/0/x001/x234/067").unwrap(), t);
        let p = Tile {
            level: None,
            index: 5,
            width: 8,
        };
        assert_eq!(p.path(), "tile/entries/005.p/8");
        assert_eq!(Tile::parse("tile/entries/005.p/8").unwrap(), p);
        for bad in [
            "tile/0/1234067",
            "tile/0/x000/067",
            "tile/64/000",
            "tile/00/000",
            "tile/0/000.p/256",
            "tile/0/000.p/0",
            "tile/0/000.p/08",
            "tiles/0/000",
            "tile/0/x1/000",
            "tile/0/x99999999999999999/000",
            "tile/0/",
            // Found by the fuzzer: Rust's integer parsing accepts a leading `+`.
            "tile/+0/x001/x234/067.p/8",
            "tile/0/+01",
            "tile/0/000.p/+8",
        ] {
            assert!(Tile::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tiles_rebuild_every_hash() {
        let mut t = MemoryTree::new();
        for i in 0..70_000u32 {
            t.append(&i.to_be_bytes());
        }
        let size = t.size();
        assert_eq!(partial_width(size, 0), (70_000 % 256) as u16);
        assert_eq!(partial_width(size, 1), ((70_000 / 256) % 256) as u16);
        let mut fetch = |level: u8, n: u64| {
            let hashes_at = size >> (u32::from(level) * 8);
            let width = (hashes_at - n * 256).min(256) as u16;
            read_tile(
                &Tile {
                    level: Some(level),
                    index: n,
                    width,
                },
                &t,
            )
        };
        for (level, index) in [
            (0u8, 0u64),
            (0, 69_999),
            (3, 5),
            (8, 0),
            (9, 135),
            (11, 33),
            (16, 1),
        ] {
            if (index + 1) << level > size {
                continue;
            }
            assert_eq!(
                hash_from_tiles(level, index, &mut fetch).unwrap(),
                t.hash(level, index).unwrap(),
                "({level}, {index})"
            );
        }
    }

    #[test]
    fn bundles() {
        let entries: Vec<&[u8]> = vec![b"a", b"", b"hello"];
        let b = encode_bundle(entries.iter().copied()).unwrap();
        assert_eq!(parse_bundle(&b).unwrap(), entries);
        assert!(
            parse_bundle(&b[..b.len() - 1])
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        let big = vec![0u8; 65_536];
        assert!(
            encode_bundle([big.as_slice()])
                .unwrap_err()
                .to_string()
                .contains("longer than 65535")
        );
    }
}
