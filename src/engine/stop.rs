//! Caller stop strings over streamed text: text that might be the start of a stop string is held back
//! until it is decided, so nothing after (or of) a stop string is ever emitted.

pub struct StopStrings {
    stops: Vec<String>,
    held: String,
}

impl StopStrings {
    pub fn new(stops: Vec<String>) -> Self {
        StopStrings {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds a delta; returns the text that is safe to emit, and whether a stop string was reached.
    pub fn push(&mut self, delta: &str) -> (String, bool) {
        self.held.push_str(delta);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let emit = self.held[..at].to_string();
            self.held.clear();
            return (emit, true);
        }
        let keep = (1..=self.held.len())
            .rev()
            .find(|&n| {
                self.held.is_char_boundary(self.held.len() - n)
                    && self
                        .stops
                        .iter()
                        .any(|s| s.starts_with(&self.held[self.held.len() - n..]))
            })
            .unwrap_or(0);
        let emit: String = self.held.drain(..self.held.len() - keep).collect();
        (emit, false)
    }

    /// The end of generation: anything still held was not a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_partial_matches_and_cuts_at_the_stop() {
        let mut s = StopStrings::new(vec!["END".into(), "\n\nUser:".into()]);
        assert_eq!(s.push("hello E"), ("hello ".into(), false));
        assert_eq!(s.push("xtra\n"), ("Extra".into(), false));
        assert_eq!(s.push("\nUs"), ("".into(), false));
        assert_eq!(s.push("er: hi"), ("".into(), true));
        let mut s = StopStrings::new(vec!["END".into()]);
        assert_eq!(s.push("abc EN"), ("abc ".into(), false));
        assert_eq!(s.finish(), "EN");
    }
}
