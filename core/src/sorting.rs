//! One sort for the whole program. The standard library's sorts are generic, so every element
//! type and every comparison closure gets its own few kilobytes of machine code; the lists the
//! gateway sorts (method answers, listings, discovery results) are short and off the per-frame
//! path, so they all go through one non-generic sort of positions instead, and only the small
//! permutation step is generic.

use std::cmp::Ordering;

/// Sorts `v` by `compare`, stably (equal elements keep their order), like `<[T]>::sort_by`.
pub fn sort_by<T>(v: &mut [T], mut compare: impl FnMut(&T, &T) -> Ordering) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    sort_positions(&mut order, &mut |a, b| compare(&v[a], &v[b]));
    permute(v, &mut order);
}

/// Sorts `v` in ascending order, stably, like `<[T]>::sort`.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// The map of `pairs`, the last of equal keys winning, as `collect` builds it, but pair by pair:
/// collecting into a `BTreeMap` (or a JSON object) first sorts the pairs with the standard
/// library's stable sort, a 5 KB instance per pair type, which these few start-up and listing
/// maps do not need.
pub fn map_of<K, V, M: Default + Extend<(K, V)>>(pairs: impl IntoIterator<Item = (K, V)>) -> M {
    let mut map = M::default();
    map.extend(pairs);
    map
}

/// The one instance of the standard library's stable sort: positions compared through `compare`.
#[inline(never)]
fn sort_positions(order: &mut [usize], compare: &mut dyn FnMut(usize, usize) -> Ordering) {
    order.sort_by(|&a, &b| compare(a, b));
}

/// Rearranges `v` so that position `i` holds the element that was at `order[i]`, following each
/// cycle of the permutation with swaps; `order` is consumed (every entry ends as its own index).
fn permute<T>(v: &mut [T], order: &mut [usize]) {
    for start in 0..v.len() {
        let mut at = start;
        while order[at] != at {
            let from = order[at];
            order[at] = at;
            if from == start {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_the_standard_library_and_keeps_equal_elements_in_order() {
        let mut seed = 0x2545_f491_u32;
        for len in 0..64 {
            let mut v: Vec<(u8, usize)> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    ((seed % 7) as u8, i)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by_key(|a| a.0);
            sort_by(&mut v, |a, b| a.0.cmp(&b.0));
            assert_eq!(v, expected, "length {len}");
        }
    }

    #[test]
    fn builds_the_map_collect_builds() {
        let pairs = [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)];
        let map: std::collections::BTreeMap<&str, i32> = map_of(pairs);
        assert_eq!(map, pairs.into_iter().collect());
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            [("a", 5), ("b", 3), ("c", 4)]
        );
        let object: serde_json::Map<String, serde_json::Value> =
            map_of([("y".to_string(), 1.into()), ("x".to_string(), 2.into())]);
        assert_eq!(
            serde_json::Value::Object(object),
            serde_json::json!({"x": 2, "y": 1})
        );
    }

    #[test]
    fn sorts_owned_values_without_losing_any() {
        let mut v: Vec<String> = ["pear", "apple", "fig", "apple", "kiwi"]
            .map(String::from)
            .to_vec();
        sort(&mut v);
        assert_eq!(v, ["apple", "apple", "fig", "kiwi", "pear"]);
        let mut empty: Vec<String> = Vec::new();
        sort(&mut empty);
        assert!(empty.is_empty());
    }
}
