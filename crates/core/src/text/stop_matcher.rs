//! `StopMatcher`: stop sequences over streamed text (spec §7.6 `stopSequences`).
//!
//! The output must be the text before the first occurrence of any stop string, and a stop
//! string may arrive split over several deltas. So text is released only once it can no longer
//! be the start of a stop string: any suffix of the unreleased text that is a proper prefix of
//! some stop string is held back until later text confirms or rules out the match. Everything
//! is cut on char boundaries, so emitted text never splits a UTF-8 character.

/// What one `push` produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopOutcome {
    /// Text that is safe to emit now (never contains a stop string or anything after one).
    pub emit: String,
    /// A stop string was found; the stream should end (after emitting `emit`).
    pub stopped: bool,
}

#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Longest stop string in bytes: no held-back suffix can be longer than this minus one.
    max_len: usize,
    /// Received but not yet emitted text (at most `max_len - 1` bytes between pushes).
    held: String,
    stopped: bool,
    matched: Option<usize>,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match before any output); with no stop
    /// strings the matcher passes every delta through unchanged.
    pub fn new<I, S>(stops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let stops: Vec<String> =
            stops.into_iter().map(|s| s.as_ref().to_owned()).filter(|s| !s.is_empty()).collect();
        let max_len = stops.iter().map(String::len).max().unwrap_or(0);
        StopMatcher { stops, max_len, held: String::new(), stopped: false, matched: None }
    }

    /// Feeds the next text delta. After a stop was reported, further input is ignored.
    pub fn push(&mut self, delta: &str) -> StopOutcome {
        if self.stopped {
            return StopOutcome { emit: String::new(), stopped: true };
        }
        if self.stops.is_empty() {
            return StopOutcome { emit: delta.to_owned(), stopped: false };
        }
        self.held.push_str(delta);

        // Earliest complete occurrence of any stop string wins. Nothing before `held` can
        // start one: such a start would have been held back as a prefix.
        let first = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|pos| (pos, i)))
            .min();
        if let Some((pos, i)) = first {
            self.held.truncate(pos);
            self.stopped = true;
            self.matched = Some(i);
            return StopOutcome { emit: std::mem::take(&mut self.held), stopped: true };
        }

        // Hold back the longest suffix that could still grow into a stop string. Only suffixes
        // shorter than the longest stop string can; scanning from the left finds the longest.
        let earliest = self.held.len().saturating_sub(self.max_len - 1);
        let cut = (earliest..self.held.len())
            .filter(|&i| self.held.is_char_boundary(i))
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(cut);
        StopOutcome { emit: std::mem::replace(&mut self.held, rest), stopped: false }
    }

    /// At the end of generation (without a stop): releases the held-back text.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// A stop string was found (every later `push` returns nothing).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// True while text is held back as a possible stop-string prefix (`flush` would return it).
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The stop string that ended the stream, if any.
    pub fn matched_stop(&self) -> Option<&str> {
        self.matched.map(|i| self.stops[i].as_str())
    }

    /// Whether any (non-empty) stop strings are configured.
    pub fn is_active(&self) -> bool {
        !self.stops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds deltas; returns (concatenated emitted text incl. final flush, stopped).
    fn run(stops: &[&str], deltas: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops);
        let mut out = String::new();
        for d in deltas {
            let o = m.push(d);
            out.push_str(&o.emit);
            if o.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    /// Reference: the text before the first occurrence of any stop in the whole text.
    fn reference(stops: &[&str], text: &str) -> (String, bool) {
        let first = stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s)).min();
        match first {
            Some(p) => (text[..p].to_owned(), true),
            None => (text.to_owned(), false),
        }
    }

    #[test]
    fn no_stops_passes_through() {
        let mut m = StopMatcher::new(Vec::<String>::new());
        assert!(!m.is_active());
        assert_eq!(m.push("abc"), StopOutcome { emit: "abc".into(), stopped: false });
        assert_eq!(m.flush(), "");
        let mut m = StopMatcher::new([""]);
        assert_eq!(m.push("x").emit, "x", "empty stop strings are ignored");
    }

    #[test]
    fn stop_inside_one_delta() {
        let mut m = StopMatcher::new(["END"]);
        let o = m.push("hello END world");
        assert_eq!(o, StopOutcome { emit: "hello ".into(), stopped: true });
        assert!(m.stopped() && !m.is_holding());
        assert_eq!(m.matched_stop(), Some("END"));
        assert!(m.push("more").stopped && m.push("more").emit.is_empty());
        assert_eq!(m.flush(), "");
    }

    #[test]
    fn stop_across_deltas_is_held_then_cut() {
        let mut m = StopMatcher::new(["</answer>"]);
        assert_eq!(m.push("42 <").emit, "42 ");
        assert_eq!(m.push("/ans").emit, "");
        let o = m.push("wer> trailing");
        assert_eq!(o, StopOutcome { emit: String::new(), stopped: true });
    }

    #[test]
    fn false_prefix_is_released() {
        let mut m = StopMatcher::new(["STOP"]);
        assert_eq!(m.push("a ST").emit, "a ");
        assert_eq!(m.push("ALL").emit, "STALL");
        assert_eq!(m.push("ST").emit, "");
        assert!(m.is_holding());
        assert_eq!(m.flush(), "ST", "held text released at the end");
        assert!(!m.stopped() && !m.is_holding());
    }

    #[test]
    fn overlapping_prefixes() {
        assert_eq!(run(&["aab"], &["a", "a", "a", "b"]), ("a".into(), true));
        assert_eq!(run(&["aab"], &["aaa", "b"]), ("a".into(), true));
        assert_eq!(run(&["aab"], &["aaa"]), ("aaa".into(), false));
        assert_eq!(run(&["abab"], &["ab", "aba", "b"]), ("".into(), true));
        assert_eq!(run(&["abab"], &["a", "ab", "a", "b"]), ("a".into(), true));
    }

    #[test]
    fn earliest_occurrence_among_several_stops_wins() {
        assert_eq!(run(&["world", "lo"], &["hello world"]), ("hel".into(), true));
        assert_eq!(run(&["xyz", "b"], &["a", "bxyz"]), ("a".into(), true));
        // A longer stop still only partially seen does not delay a complete shorter one.
        assert_eq!(run(&["abcd", "c"], &["ab", "c", "d"]), ("ab".into(), true));
        let mut m = StopMatcher::new(["\n\n", "User:"]);
        assert_eq!(m.push("Hi.\n").emit, "Hi.");
        let o = m.push("User: x");
        assert_eq!((o.emit.as_str(), o.stopped, m.matched_stop()), ("\n", true, Some("User:")));
    }

    #[test]
    fn unicode_is_never_split() {
        // Stop shares a leading byte sequence with other text: "é" = C3 A9, "è" = C3 A8.
        let mut m = StopMatcher::new(["éé"]);
        assert_eq!(m.push("caféè").emit, "caféè");
        assert_eq!(m.push("😀é").emit, "😀");
        let o = m.push("é!");
        assert_eq!(o, StopOutcome { emit: String::new(), stopped: true });
        assert_eq!(run(&["世界"], &["你好世", "界!"]), ("你好".into(), true));
        assert_eq!(run(&["👍🏽"], &["ok 👍", "🏻 👍", "🏽"]), ("ok 👍🏻 ".into(), true));
    }

    #[test]
    fn matches_reference_for_every_split() {
        let cases: &[(&[&str], &str)] = &[
            (&["aab"], "xaaaabyy"),
            (&["END", "ENDING"], "the ENDIN ENDING END"),
            (&["<|im_end|>", "\n\n"], "Paris.<|im_e nd|> then\n.\n\nx"),
            (&["é😀", "😀😀"], "aé😀é😀😀"),
            (&["zzz"], "no stop here"),
        ];
        for (stops, text) in cases {
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            // Every split of the text into two or three deltas at char boundaries.
            for a in 0..=chars.len() {
                for b in a..=chars.len() {
                    let at = |k: usize| chars.get(k).map_or(text.len(), |c| c.0);
                    let deltas = [&text[..at(a)], &text[at(a)..at(b)], &text[at(b)..]];
                    assert_eq!(run(stops, &deltas), reference(stops, text), "{stops:?} {deltas:?}");
                }
            }
            // And char by char.
            let singles: Vec<String> = text.chars().map(String::from).collect();
            let singles: Vec<&str> = singles.iter().map(String::as_str).collect();
            assert_eq!(run(stops, &singles), reference(stops, text), "{stops:?} char by char");
        }
    }

    #[test]
    fn held_text_is_bounded_by_longest_stop() {
        let mut m = StopMatcher::new(["abc", "x"]);
        for _ in 0..100 {
            m.push("ab");
            assert!(m.held.len() < 3);
        }
    }
}
