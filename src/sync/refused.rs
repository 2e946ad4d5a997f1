//! What one initiator session refused, so that knowledge never covers a record the node does
//! not hold (ARCHITECTURE.md, "Invariants"). A record dropped because its writer held no
//! Write permission here is noted; every knowledge the session merges afterwards is lowered,
//! for that writer's device in every scope that may cover the row, to below the refused
//! generation, so the record stays wanted and is sent again. The notes are also kept aside to
//! be re-examined when the syncgroup metadata governing them changes: once a refused record
//! would pass, the session is restarted and fetches it. Bounded: past [`MAX_FLOORS`] (device,
//! scope) floors the session merges no knowledge at all (still correct, only slower); past
//! [`MAX_SAMPLES`] kept records any change of the governing rule counts as a possible permit.

use std::collections::BTreeMap;

use crate::genvec::{DeviceId, Generation, Knowledge, Scope};
use crate::store::LogRecord;
use crate::sync::host::WriterCheck;

/// Most (device, asked scope) floors one session keeps before it stops merging knowledge.
pub const MAX_FLOORS: usize = 1024;
/// Most refused records one session keeps for re-examination.
pub const MAX_SAMPLES: usize = 256;

/// A refused record, as far as re-examining it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    device: DeviceId,
    generation: Generation,
    table: String,
    row: String,
}

/// The records one session refused.
#[derive(Debug, Clone, Default)]
pub struct Refused {
    /// (writer, asked scope holding the row) -> lowest generation refused there.
    floors: BTreeMap<(DeviceId, Scope), Generation>,
    /// More floors than [`MAX_FLOORS`] were needed: merge no knowledge.
    blind: bool,
    /// Refused records kept for re-examination (at most [`MAX_SAMPLES`]).
    samples: Vec<Sample>,
    /// The rule the first record not kept as a sample was refused under.
    unsampled_under: Option<WriterCheck>,
}

impl Refused {
    /// No refusals yet.
    pub fn new() -> Self {
        Refused::default()
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && !self.blind && self.floors.is_empty()
    }

    /// Notes `record`, refused under `check`, for a session that asked for `asked`.
    pub fn note(&mut self, record: &LogRecord, asked: &[Scope], check: &WriterCheck) {
        self.lower_below(record, asked);
        let (device, generation) = (record.device(), record.generation());
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(Sample {
                device,
                generation,
                table: record.table.clone(),
                row: record.row.clone(),
            });
        } else if self.unsampled_under.is_none() {
            // The first rule counts: a later refusal under a newer rule must not hide that
            // the rule changed since the earlier ones.
            self.unsampled_under = Some(check.clone());
        }
    }

    /// Keeps the knowledge merged below `record` in every asked scope covering its row.
    fn lower_below(&mut self, record: &LogRecord, asked: &[Scope]) {
        let (device, generation) = (record.device(), record.generation());
        for scope in asked
            .iter()
            .filter(|s| s.covers(&record.table, &record.row))
        {
            let key = (device, scope.clone());
            let room = self.floors.len() < MAX_FLOORS;
            match self.floors.get_mut(&key) {
                Some(floor) => *floor = (*floor).min(generation),
                None if room => {
                    self.floors.insert(key, generation);
                }
                None => self.blind = true,
            }
        }
    }

    /// Notes `record`, a link kept out because its winner was refused: the knowledge stays
    /// below it, but it takes no sample (its own writer may write: the session is re-issued
    /// when its winner's writer may, which the winner's refusal samples).
    pub fn note_dependent(&mut self, record: &LogRecord, asked: &[Scope]) {
        self.lower_below(record, asked);
    }

    /// The part of a responder's `knowledge` the session may merge: each vector's entry for a
    /// refused writer lowered to below the lowest generation refused under any asked scope the
    /// vector's scope overlaps (so it covers no refused row). None when the session is blind.
    pub fn lower(&self, knowledge: Knowledge) -> Option<Knowledge> {
        if self.blind {
            return None;
        }
        if self.floors.is_empty() {
            return Some(knowledge);
        }
        let mut lowered = Knowledge::new();
        for (scope, vector) in knowledge.iter() {
            let mut vector = vector.clone();
            for ((device, asked), floor) in &self.floors {
                if overlaps(scope, asked) && vector.get(*device) >= *floor {
                    vector.set(*device, floor.previous());
                }
            }
            lowered.insert(scope.clone(), vector);
        }
        Some(lowered)
    }

    /// Whether `check` (the rule now) may accept a record refused earlier: a kept record
    /// passes it, or records were refused beyond those kept and the rule changed since.
    pub fn permitted_by(&self, check: &WriterCheck) -> bool {
        let sampled = self.samples.iter().any(|sample| {
            check.allows(sample.device, sample.generation, &sample.table, &sample.row)
        });
        sampled
            || self
                .unsampled_under
                .as_ref()
                .is_some_and(|under| under != check)
    }
}

/// Whether two scopes share a row: same table, one prefix starting the other. A scope covering
/// a row and another scope covering the same row always overlap.
fn overlaps(a: &Scope, b: &Scope) -> bool {
    a.contains(b) || b.contains(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use crate::genvec::GenVector;
    use crate::store::{RecordContent, Version};

    const A: DeviceId = DeviceId(1);
    const C: DeviceId = DeviceId(3);

    /// A link by `device` at generation `number`, with a version of the same number.
    fn record(device: DeviceId, number: u64, row: &str) -> LogRecord {
        LogRecord {
            table: "t".into(),
            row: row.into(),
            version: Version(number),
            content: RecordContent::Link {
                device,
                generation: Generation::new(number),
                parents: Vec::new(),
                hlc: Hlc::default(),
            },
        }
    }

    /// Knowledge of table `t`: prefix -> (device, generation number) entries.
    fn knowledge(entries: &[(&str, &[(DeviceId, u64)])]) -> Knowledge {
        let mut knowledge = Knowledge::new();
        for (prefix, vector) in entries {
            let vector: GenVector = vector
                .iter()
                .map(|&(device, number)| (device, Generation::new(number)))
                .collect();
            knowledge.insert(Scope::new("t", *prefix), vector);
        }
        knowledge
    }

    fn peer() -> crate::identity::Fingerprint {
        crate::identity::Fingerprint::parse(&"e".repeat(64)).unwrap()
    }

    fn no_writers() -> WriterCheck {
        WriterCheck::new(peer(), Vec::new(), Vec::new())
    }

    #[test]
    fn knowledge_merged_after_a_refusal_stops_below_the_refused_generation() {
        let asked = [Scope::new("t", "")];
        let mut refused = Refused::new();
        refused.note(&record(C, 4, "c1"), &asked, &no_writers());
        refused.note(&record(C, 6, "c2"), &asked, &no_writers());
        let lowered = refused
            .lower(knowledge(&[("", &[(A, 9), (C, 7)]), ("c", &[(C, 8)])]))
            .unwrap();
        assert_eq!(
            lowered,
            knowledge(&[("", &[(A, 9), (C, 3)]), ("c", &[(C, 3)])])
        );
        let mut stored = Knowledge::new();
        stored.merge_response(&lowered);
        assert_eq!(
            stored.known_gen("t", "c1", C),
            Generation::new(3),
            "c1 is wanted again"
        );
        assert_eq!(
            stored.known_gen("t", "zz", A),
            Generation::new(9),
            "other writers advance"
        );
    }

    #[test]
    fn knowledge_below_the_refused_generation_is_left_as_it_is() {
        let asked = [Scope::new("t", "")];
        let mut refused = Refused::new();
        refused.note(&record(C, 5, "c1"), &asked, &no_writers());
        let incoming = knowledge(&[("", &[(C, 2)])]);
        assert_eq!(refused.lower(incoming.clone()), Some(incoming));
    }

    #[test]
    fn a_refusal_lowers_only_scopes_sharing_rows_with_its_asked_scope() {
        let asked = [Scope::new("t", "a"), Scope::new("t", "b")];
        let mut refused = Refused::new();
        refused.note(&record(C, 2, "a1"), &asked, &no_writers());
        let lowered = refused
            .lower(knowledge(&[
                ("a", &[(C, 5)]),
                ("b", &[(C, 5)]),
                ("a1", &[(C, 5)]),
            ]))
            .unwrap();
        assert_eq!(
            lowered,
            knowledge(&[("a", &[(C, 1)]), ("b", &[(C, 5)]), ("a1", &[(C, 1)])])
        );
    }

    #[test]
    fn a_session_over_its_floor_cap_merges_no_knowledge() {
        let asked = [Scope::new("t", "")];
        let mut refused = Refused::new();
        for device in 1..=MAX_FLOORS as u64 {
            refused.note(
                &record(DeviceId(100 + device), 1, "x"),
                &asked,
                &no_writers(),
            );
        }
        assert!(refused.lower(knowledge(&[("", &[])])).is_some());
        refused.note(&record(DeviceId(7), 1, "x"), &asked, &no_writers());
        assert_eq!(refused.lower(knowledge(&[("", &[(A, 1)])])), None);
    }

    #[test]
    fn a_refused_record_is_permitted_once_its_writer_may_write_the_row() {
        let asked = [Scope::new("t", "")];
        let mut refused = Refused::new();
        assert!(refused.is_empty());
        refused.note(&record(C, 4, "c1"), &asked, &no_writers());
        assert!(!refused.is_empty());
        assert!(!refused.permitted_by(&no_writers()));
        let declared = WriterCheck::new(peer(), Vec::new(), vec![Scope::new("t", "c")]);
        assert!(refused.permitted_by(&declared));
        let elsewhere = WriterCheck::new(peer(), Vec::new(), vec![Scope::new("t", "d")]);
        assert!(!refused.permitted_by(&elsewhere));
    }

    #[test]
    fn refusals_beyond_the_kept_ones_count_any_rule_change_as_a_permit() {
        let asked = [Scope::new("t", "")];
        let mut refused = Refused::new();
        for generation in 1..=MAX_SAMPLES as u64 {
            refused.note(&record(C, generation, "c1"), &asked, &no_writers());
        }
        refused.note(&record(C, 999, "z9"), &asked, &no_writers());
        assert!(!refused.permitted_by(&no_writers()));
        let changed = WriterCheck::new(peer(), Vec::new(), vec![Scope::new("t", "q")]);
        assert!(refused.permitted_by(&changed));
        // Refused again under the new rule: the change since the first is still seen.
        refused.note(&record(C, 1000, "z8"), &asked, &changed);
        assert!(refused.permitted_by(&changed));
    }
}
