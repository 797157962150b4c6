//! Ranges of consecutive numbers (objects or blocks), in the one convention
//! the wire format uses: `(first, count)` pairs, ascending and disjoint, no
//! empty range. Every list of ranges in the core, on the wire and in the IO
//! layer's resume records goes through these functions, so there is one
//! place that gets the overflow at `u32::MAX` and the merging right.

/// One range: `count` consecutive numbers from `first`.
pub type Range = (u32, u32);

fn end(&(first, count): &Range) -> u64 {
    first as u64 + count as u64
}

/// Ascending numbers as ranges (each number once; a repeated number is
/// ignored, a number below its predecessor starts a new range).
pub fn from_ascending(numbers: impl IntoIterator<Item = u32>) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    for n in numbers {
        match out.last_mut() {
            Some((f, c)) if end(&(*f, *c)) == n as u64 => *c += 1,
            Some((f, c)) if (*f..).contains(&n) && (n as u64) < end(&(*f, *c)) => {}
            _ => out.push((n, 1)),
        }
    }
    out
}

/// Ranges in any order, possibly overlapping or empty, clipped to
/// `0..limit`, as ascending disjoint ranges (adjacent ones merged).
pub fn normalize(ranges: &[Range], limit: u32) -> Vec<Range> {
    merge(ranges, limit as u64)
}

/// [`normalize`] with the limit one past `u32::MAX` allowed; a merged range
/// longer than `u32::MAX` keeps `u32::MAX` numbers.
fn merge(ranges: &[Range], limit: u64) -> Vec<Range> {
    let mut spans: Vec<(u64, u64)> = ranges
        .iter()
        .map(|r| ((r.0 as u64).min(limit), end(r).min(limit)))
        .filter(|(s, e)| s < e)
        .collect();
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, stop) in spans {
        match out.last_mut() {
            Some((_, e)) if start <= *e => *e = (*e).max(stop),
            _ => out.push((start, stop)),
        }
    }
    out.into_iter()
        .map(|(s, e)| (s as u32, (e - s).min(u32::MAX as u64) as u32))
        .collect()
}

/// The union of two lists of ascending disjoint ranges.
pub fn union(a: &[Range], b: &[Range]) -> Vec<Range> {
    let all: Vec<Range> = a.iter().chain(b).copied().collect();
    merge(&all, u32::MAX as u64 + 1)
}

/// True when `n` lies in one of the ascending disjoint ranges.
pub fn contains(ranges: &[Range], n: u32) -> bool {
    let i = ranges.partition_point(|&(f, _)| f <= n);
    i > 0 && (n as u64) < end(&ranges[i - 1])
}

/// The intersection of two lists of ascending disjoint ranges.
pub fn intersect(a: &[Range], b: &[Range]) -> Vec<Range> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].0.max(b[j].0) as u64;
        let stop = end(&a[i]).min(end(&b[j]));
        if start < stop {
            out.push((start as u32, (stop - start) as u32));
        }
        if end(&a[i]) < end(&b[j]) {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// True when the ranges are non-empty, ascending and disjoint, and none
/// starts below `floor`: the form every list of ranges on the wire must have.
pub fn is_canonical(ranges: impl IntoIterator<Item = Range>, floor: u32) -> bool {
    let mut next = floor as u64;
    for r in ranges {
        if (r.0 as u64) < next || r.1 == 0 {
            return false;
        }
        next = end(&r);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_intersect() {
        assert_eq!(
            union(&[(1, 2), (10, 5)], &[(2, 3), (15, 1)]),
            vec![(1, 4), (10, 6)]
        );
        assert_eq!(union(&[], &[(u32::MAX, 1)]), vec![(u32::MAX, 1)]);
        assert!(contains(&[(1, 4), (10, 6)], 4));
        assert!(!contains(&[(1, 4), (10, 6)], 5));
        assert!(contains(&[(1, 4), (10, 6)], 15));
        assert!(!contains(&[(1, 4), (10, 6)], 16));
        assert!(!contains(&[(1, 4)], 0));
        assert_eq!(
            intersect(&[(1, 10)], &[(0, 3), (5, 2), (9, 9)]),
            vec![(1, 2), (5, 2), (9, 2)]
        );
        assert_eq!(intersect(&[(1, 2)], &[(3, 1)]), vec![]);
    }

    #[test]
    fn numbers_and_unsorted_lists_become_canonical_ranges() {
        assert_eq!(
            from_ascending([0, 1, 2, 5, 5, 6, 9]),
            vec![(0, 3), (5, 2), (9, 1)]
        );
        assert_eq!(
            from_ascending([u32::MAX - 1, u32::MAX]),
            vec![(u32::MAX - 1, 2)]
        );
        assert_eq!(
            normalize(&[(8, 4), (0, 0), (2, 3), (4, 2), (20, 1)], 10),
            vec![(2, 4), (8, 2)]
        );
        assert_eq!(normalize(&[(u32::MAX, u32::MAX)], u32::MAX), vec![]);
        assert!(is_canonical([(1, 2), (3, 1)], 1));
        assert!(!is_canonical([(1, 2), (2, 1)], 1), "overlap");
        assert!(!is_canonical([(0, 2)], 1), "below the floor");
        assert!(!is_canonical([(4, 0)], 1), "empty");
        assert!(!is_canonical([(4, 1), (2, 1)], 1), "descending");
    }
}
