//! How the demo prints: one line per event, node names in a fixed-width column, colour only
//! on a terminal and not under `NO_COLOR` (the rule `serve`'s log follows), and the latency
//! figures ([`Latencies`]: percentiles of the deliveries measured).

use std::io::IsTerminal;
use std::time::Duration;

use anstyle::{AnsiColor, Style};

use crate::cli::output::{OutputError, outln};

/// The demo's printer: whether it colours.
#[derive(Debug, Clone, Copy)]
pub struct Show {
    colour: bool,
}

/// What a piece of text is, which picks its colour.
#[derive(Debug, Clone, Copy)]
pub enum Tone {
    /// A node's name.
    Node,
    /// A scene's heading (partition, heal, ...).
    Heading,
    /// Something that arrived or agrees.
    Good,
    /// Something cut off or held back.
    Bad,
    /// Secondary detail.
    Dim,
}

impl Show {
    /// Colour only when stdout is a terminal and `NO_COLOR` is unset or empty (no-color.org).
    pub fn for_stdout() -> Show {
        Show {
            colour: crate::cli::serve::log_in_colour(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ),
        }
    }

    /// `text` in `tone`'s colour (unchanged without colour).
    pub fn paint(self, tone: Tone, text: &str) -> String {
        if !self.colour {
            return text.to_owned();
        }
        let style = match tone {
            Tone::Node => Style::new().bold(),
            Tone::Heading => AnsiColor::Cyan.on_default().bold(),
            Tone::Good => AnsiColor::Green.on_default(),
            Tone::Bad => AnsiColor::Red.on_default(),
            Tone::Dim => Style::new().dimmed(),
        };
        format!("{style}{text}{style:#}")
    }

    /// A node's name padded to the column width, then painted.
    pub fn node(self, name: &str) -> String {
        self.paint(Tone::Node, &format!("{name:<NAME_WIDTH$}"))
    }

    /// A scene heading on a line of its own, after a blank line.
    pub fn heading(self, text: &str) -> Result<(), OutputError> {
        outln!()?;
        outln!("{}", self.paint(Tone::Heading, &format!("== {text}")))
    }

    /// One line of a scene, indented under its heading.
    pub fn line(self, text: &str) -> Result<(), OutputError> {
        outln!("  {text}")
    }
}

/// The widest node name ("alice", "carol").
const NAME_WIDTH: usize = 5;

/// A duration as whole milliseconds, or with one decimal under 10 ms: `4.2 ms`, `37 ms`.
pub fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A byte count in B, KiB or MiB.
pub fn bytes(count: u64) -> String {
    match count {
        0..1024 => format!("{count} B"),
        1024..1_048_576 => format!("{:.1} KiB", count as f64 / 1024.0),
        _ => format!("{:.1} MiB", count as f64 / 1_048_576.0),
    }
}

/// The delivery latencies measured (one per write and receiving node).
#[derive(Debug, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.0.push(latency);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`th percentile (0-100) by nearest rank; None with no sample.
    pub fn percentile(&self, p: u32) -> Option<Duration> {
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
        sorted.get(rank - 1).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paint_adds_codes_only_when_colour_is_on() {
        let plain = Show { colour: false };
        assert_eq!(plain.paint(Tone::Bad, "cut"), "cut");
        assert_eq!(plain.node("bob"), "bob  ");
        let coloured = Show { colour: true };
        assert!(coloured.paint(Tone::Bad, "cut").starts_with("\x1b["));
    }

    #[test]
    fn percentiles_are_by_nearest_rank() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.percentile(50), None);
        for ms in [5, 1, 4, 2, 3] {
            latencies.record(Duration::from_millis(ms));
        }
        assert_eq!(latencies.percentile(50), Some(Duration::from_millis(3)));
        assert_eq!(latencies.percentile(95), Some(Duration::from_millis(5)));
        assert_eq!(latencies.percentile(0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn figures_read_naturally() {
        assert_eq!(millis(Duration::from_micros(4_240)), "4.2 ms");
        assert_eq!(millis(Duration::from_millis(37)), "37 ms");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 + 512), "3.5 KiB");
        assert_eq!(bytes(5 * 1_048_576), "5.0 MiB");
    }
}
