//! Longest-prefix routing table over ILP addresses, generic over what a route points at.
//!
//! Prefixes match on whole segments: `g.a` covers `g.a` and `g.a.b` but not `g.ab`. The empty
//! prefix `""` is the default route and covers every address.
//!
//! Lookups sit on the packet hot path, so they cost one hash probe per candidate prefix: the
//! address itself, then each truncation at a `.` from the longest down, then `""`. Candidates
//! longer than the longest stored prefix are skipped without hashing.

use std::collections::BTreeMap;

/// A routing table mapping address prefixes to values (next hops, route records, ...).
#[derive(Debug, Clone)]
pub struct RoutingTable<V> {
    /// foldhash: a few times faster than SipHash on short keys, still seeded per table.
    entries: foldhash::HashMap<String, V>,
    /// How many stored prefixes have each length; its last key bounds the candidates a lookup
    /// needs to probe.
    lengths: BTreeMap<usize, usize>,
}

impl<V> Default for RoutingTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RoutingTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        RoutingTable {
            entries: foldhash::HashMap::default(),
            lengths: BTreeMap::new(),
        }
    }

    /// Number of prefixes stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no prefix at all (not even a default route).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets the value for exactly `prefix`, returning the one it replaces.
    ///
    /// A prefix with a trailing `.` can never match an address; callers validate prefixes.
    pub fn insert(&mut self, prefix: impl Into<String>, value: V) -> Option<V> {
        let prefix = prefix.into();
        let len = prefix.len();
        let old = self.entries.insert(prefix, value);
        if old.is_none() {
            *self.lengths.entry(len).or_insert(0) += 1;
        }
        old
    }

    /// Removes exactly `prefix`, returning its value.
    pub fn remove(&mut self, prefix: &str) -> Option<V> {
        let old = self.entries.remove(prefix)?;
        if let Some(count) = self.lengths.get_mut(&prefix.len()) {
            *count -= 1;
            if *count == 0 {
                self.lengths.remove(&prefix.len());
            }
        }
        Some(old)
    }

    /// The value stored for exactly `prefix` (no longest-prefix matching).
    pub fn get(&self, prefix: &str) -> Option<&V> {
        self.entries.get(prefix)
    }

    /// Mutable access to the value stored for exactly `prefix`.
    pub fn get_mut(&mut self, prefix: &str) -> Option<&mut V> {
        self.entries.get_mut(prefix)
    }

    /// Whether exactly `prefix` is stored.
    pub fn contains_prefix(&self, prefix: &str) -> bool {
        self.entries.contains_key(prefix)
    }

    /// The entry whose prefix is the longest one covering `address` on segment boundaries,
    /// falling back to the default route `""` when stored.
    pub fn lookup<'a>(&'a self, address: &str) -> Option<(&'a str, &'a V)> {
        let max_len = *self.lengths.keys().next_back()?;
        if address.len() <= max_len {
            if let Some((k, v)) = self.entries.get_key_value(address) {
                return Some((k.as_str(), v));
            }
        }
        let bytes = address.as_bytes();
        let mut end = bytes.len();
        while let Some(dot) = bytes[..end].iter().rposition(|b| *b == b'.') {
            end = dot;
            if end > max_len {
                continue;
            }
            // `dot` indexes an ASCII byte, so slicing there stays on a char boundary.
            if let Some((k, v)) = address
                .get(..end)
                .and_then(|candidate| self.entries.get_key_value(candidate))
            {
                return Some((k.as_str(), v));
            }
        }
        self.entries.get_key_value("").map(|(k, v)| (k.as_str(), v))
    }

    /// The value of [`RoutingTable::lookup`], without its prefix.
    pub fn resolve(&self, address: &str) -> Option<&V> {
        self.lookup(address).map(|(_, v)| v)
    }

    /// Every (prefix, value) pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every stored prefix, in no particular order.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.lengths.clear();
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut V) -> bool) {
        let lengths = &mut self.lengths;
        self.entries.retain(|k, v| {
            let kept = keep(k, v);
            if !kept {
                if let Some(count) = lengths.get_mut(&k.len()) {
                    *count -= 1;
                    if *count == 0 {
                        lengths.remove(&k.len());
                    }
                }
            }
            kept
        });
    }
}

impl<V> FromIterator<(String, V)> for RoutingTable<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut table = RoutingTable::new();
        for (prefix, value) in iter {
            table.insert(prefix, value);
        }
        table
    }
}

/// Whether `prefix` covers `address` on whole segments (`""` covers everything).
pub fn prefix_matches(prefix: &str, address: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    match address.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('.'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(prefixes: &[&str]) -> RoutingTable<String> {
        prefixes
            .iter()
            .map(|p| (p.to_string(), format!("hop:{p}")))
            .collect()
    }

    #[test]
    fn matches_whole_segments_only() {
        let t = table(&["g.a"]);
        assert_eq!(t.lookup("g.a"), Some(("g.a", &"hop:g.a".to_string())));
        assert_eq!(t.resolve("g.a.b"), Some(&"hop:g.a".to_string()));
        assert_eq!(t.resolve("g.a.b.c"), Some(&"hop:g.a".to_string()));
        assert_eq!(t.resolve("g.ab"), None);
        assert_eq!(t.resolve("g"), None);
        assert_eq!(t.resolve("g.b"), None);
        assert_eq!(t.resolve(""), None);
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table(&["g", "g.a", "g.a.b", "g.a.b.c.d"]);
        assert_eq!(t.lookup("g.a.b.c").map(|e| e.0), Some("g.a.b"));
        assert_eq!(t.lookup("g.a.b.c.d.e").map(|e| e.0), Some("g.a.b.c.d"));
        assert_eq!(t.lookup("g.a.x").map(|e| e.0), Some("g.a"));
        assert_eq!(t.lookup("g.ab").map(|e| e.0), Some("g"));
        assert_eq!(t.lookup("g").map(|e| e.0), Some("g"));
        assert_eq!(t.lookup("test.x").map(|e| e.0), None);
    }

    #[test]
    fn empty_prefix_is_default_route() {
        let t = table(&["", "g.a"]);
        assert_eq!(t.lookup("test.x").map(|e| e.0), Some(""));
        assert_eq!(t.lookup("g.ab").map(|e| e.0), Some(""));
        assert_eq!(t.lookup("g.a.c").map(|e| e.0), Some("g.a"));
        assert_eq!(t.lookup("").map(|e| e.0), Some(""));
    }

    #[test]
    fn insert_replace_remove() {
        let mut t = RoutingTable::new();
        assert!(t.is_empty());
        assert_eq!(t.insert("g.a", 1), None);
        assert_eq!(t.insert("g.a", 2), Some(1));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("g.a"), Some(&2));
        assert_eq!(t.get("g"), None);
        *t.get_mut("g.a").unwrap() = 3;
        assert_eq!(t.resolve("g.a.b"), Some(&3));
        assert_eq!(t.remove("g.a"), Some(3));
        assert_eq!(t.remove("g.a"), None);
        assert!(t.is_empty());
        assert_eq!(t.resolve("g.a.b"), None);
    }

    #[test]
    fn long_prefix_removed_then_short_still_found() {
        let mut t = table(&["g.a", "g.a.b.c"]);
        t.remove("g.a.b.c");
        assert_eq!(t.lookup("g.a.b.c.d").map(|e| e.0), Some("g.a"));
        t.retain(|p, _| p != "g.a");
        assert_eq!(t.lookup("g.a.b.c.d"), None);
        assert!(t.is_empty());
        t.insert("", "d".to_string());
        assert_eq!(t.prefixes().collect::<Vec<_>>(), vec![""]);
        t.clear();
        assert_eq!(t.lookup("g.a"), None);
    }

    #[test]
    fn non_ascii_addresses_do_not_panic() {
        let t = table(&["g.é", ""]);
        assert_eq!(t.lookup("g.é.x").map(|e| e.0), Some("g.é"));
        assert_eq!(t.lookup("ü.ä.ö").map(|e| e.0), Some(""));
    }

    #[test]
    fn prefix_matches_rules() {
        assert!(prefix_matches("", "g.a"));
        assert!(prefix_matches("g.a", "g.a"));
        assert!(prefix_matches("g.a", "g.a.b"));
        assert!(!prefix_matches("g.a", "g.ab"));
        assert!(!prefix_matches("g.a.b", "g.a"));
    }

    fn naive<'a, V>(entries: &'a [(String, V)], address: &str) -> Option<&'a str> {
        entries
            .iter()
            .filter(|(p, _)| prefix_matches(p, address))
            .max_by_key(|(p, _)| p.len())
            .map(|(p, _)| p.as_str())
    }

    fn prefix_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            proptest::collection::vec("[ab]{1,2}", 1..4).prop_map(|s| s.join(".")),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_naive_reference(
            prefixes in proptest::collection::vec(prefix_strategy(), 0..12),
            removals in proptest::collection::vec(prefix_strategy(), 0..4),
            addresses in proptest::collection::vec(
                proptest::collection::vec("[ab]{1,2}", 0..6).prop_map(|s| s.join(".")), 1..16),
        ) {
            let mut t = RoutingTable::new();
            let mut reference: Vec<(String, ())> = Vec::new();
            for p in &prefixes {
                t.insert(p.clone(), ());
                if !reference.iter().any(|(q, _)| q == p) {
                    reference.push((p.clone(), ()));
                }
            }
            for r in &removals {
                t.remove(r);
                reference.retain(|(q, _)| q != r);
            }
            prop_assert_eq!(t.len(), reference.len());
            for a in &addresses {
                prop_assert_eq!(t.lookup(a).map(|e| e.0), naive(&reference, a));
            }
        }

        #[test]
        fn arbitrary_text_never_panics_and_agrees(
            prefixes in proptest::collection::vec(".{0,8}", 0..8),
            address in ".{0,24}",
        ) {
            let mut reference: Vec<(String, ())> = prefixes.iter().map(|p| (p.clone(), ())).collect();
            reference.sort();
            reference.dedup();
            let t: RoutingTable<()> = prefixes.into_iter().map(|p| (p, ())).collect();
            prop_assert_eq!(t.lookup(&address).map(|e| e.0), naive(&reference, &address));
        }
    }
}
