//! Tests of the oracle and the checks: two or three memory stores synced by hand (a page read
//! from one, applied to another, as `store/tests.rs` does) pass every check; then each
//! invariant is broken on purpose and the matching `Violation` is asserted.

use super::check::{self, Share, View, Violation, check_all};
use super::harness::*;
use super::oracle::Oracle;
use crate::clock::Hlc;
use crate::genvec::{DeviceId, GenVector, Generation, Knowledge, Scope};
use crate::store::{PageRequest, RecordContent, RowHead, Store, Version};

/// Three stores: concurrent puts of one row, a batch writing a row twice, a delete of a row
/// never seen where it is deleted, a delete then a concurrent put.
fn busy_trio() -> Sim {
    let mut sim = Sim::new(3);
    sim.write(0, &[put("k", "a")]);
    sim.write(1, &[put("k", "b")]);
    sim.write(2, &[put("k", "c"), put("j", "1"), put("k", "c2")]);
    sim.write(1, &[delete("never")]);
    sim.write(0, &[put("gone", "x")]);
    sim.sync(1, 0);
    sim.write(1, &[delete("gone")]);
    sim.write(2, &[put("gone", "concurrent")]);
    sim
}

#[test]
fn stores_synced_by_hand_pass_every_check() {
    let mut sim = busy_trio();
    let resolutions = sim.sync_all();
    assert!(resolutions >= 2, "the run must resolve conflicts");
    sim.check().unwrap();
    let k = sim.head(0, "k").version;
    assert_eq!(k, sim.acked(2, "k"), "node 2's clock is the latest");
    assert_eq!(
        sim.head(1, "gone").version,
        sim.acked(2, "gone"),
        "a concurrent put with a later clock wins over the delete"
    );
}

#[test]
fn a_batch_writing_a_row_twice_records_both_writes_in_causal_order() {
    let mut sim = Sim::new(1);
    sim.write(0, &[put("k", "1"), put("j", "x"), put("k", "2")]);
    let writes = sim.oracle.writes();
    assert_eq!(writes.len(), 3);
    let (first, second) = (&writes[0], &writes[2]);
    assert_eq!(second.parent, Some(first.version));
    assert!(second.context.contains(&first.version));
    assert!(second.beats(first) && !first.beats(second));
    assert!(first.hlc < writes[1].hlc && writes[1].hlc < second.hlc);
    sim.check().unwrap();
}

#[test]
fn a_causally_later_write_is_stamped_above_its_parent_when_its_clock_is_behind() {
    let mut sim = Sim::new(2);
    sim.times[0].advance(3_600 * SECOND);
    sim.write(0, &[put("k", "from the future")]);
    sim.sync(1, 0);
    sim.write(1, &[put("k", "after it")]);
    let (first, later) = (sim.acked(0, "k"), sim.acked(1, "k"));
    let writes = sim.oracle.writes();
    let clock = sim.stores[1].clock().last();
    assert!(clock < writes[0].hlc, "node 1's clock stayed behind");
    assert!(writes[1].hlc > writes[0].hlc, "its write did not");
    sim.sync_all();
    assert_eq!(sim.head(0, "k").version, later);
    assert_ne!(first, later);
    sim.check().unwrap();
}

#[test]
fn a_scope_not_synced_yet_diverges() {
    let mut sim = Sim::new(2);
    sim.write(0, &[put("k", "1")]);
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    let violation = check::check_convergence(&view).unwrap_err();
    assert!(
        matches!(&violation, Violation::Diverged { nodes: (0, 1), row: r, heads: (Some(_), None) } if *r == row("k")),
        "{violation}"
    );
    assert_eq!(sim.check(), Err(violation));
}

#[test]
fn a_node_that_never_received_a_write_it_must_reflect_lost_it() {
    let mut sim = Sim::new(2);
    sim.write(0, &[put("k", "1")]);
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    let violation = check::check_no_write_lost(&view).unwrap_err();
    let write = sim.oracle.writes()[0].clone();
    let expected = Violation::WriteLost {
        node: 1,
        row: Box::new(row("k")),
        version: sim.acked(0, "k"),
        writer: 0,
        head: None,
        held: false,
        device: write.device,
        generation: write.generation,
        known: Generation::NONE,
    };
    assert_eq!(violation, expected);
}

#[test]
fn a_head_moved_off_the_dag_loses_the_writes_behind_it() {
    let mut sim = Sim::new(1);
    sim.write(0, &[put("k", "1")]);
    let stray = RowHead {
        version: Version(7),
        deleted: false,
        value: b"stray".to_vec(),
    };
    sim.stores[0].tamper_head(&db(), "t", "k", &stray);
    let violation = sim.check().unwrap_err();
    assert!(
        matches!(
            violation,
            Violation::WriteLost {
                node: 0,
                held: true,
                head: Some(Version(7)),
                ..
            }
        ),
        "{violation}"
    );
}

#[test]
fn a_shares_members_relay_so_a_write_is_required_two_hops_away() {
    let mut sim = Sim::new(3);
    sim.shares = vec![
        Share {
            db: db(),
            scope: whole_table(),
            nodes: vec![0, 1],
        },
        Share {
            db: db(),
            scope: Scope::new("t", "k"),
            nodes: vec![1, 2],
        },
    ];
    sim.write(0, &[put("k1", "1"), put("other", "2")]);
    sim.sync(1, 0);
    let violation = sim.check().unwrap_err();
    assert!(
        matches!(&violation, Violation::Diverged { nodes: (1, 2), row: r, .. } if *r == row("k1")),
        "{violation}"
    );
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    let lost = check::check_no_write_lost(&view).unwrap_err();
    assert!(
        matches!(&lost, Violation::WriteLost { node: 2, row, .. } if row.row == "k1"),
        "{lost}"
    );
}

#[test]
fn a_down_writer_whose_write_nobody_received_is_not_required_yet() {
    let mut sim = Sim::new(3);
    sim.write(2, &[put("k", "unsent")]);
    sim.write(0, &[put("j", "sent")]);
    sim.sync(1, 0);
    let live = [(0, &sim.stores[0]), (1, &sim.stores[1])];
    check_all(&sim.oracle, &live, &sim.shares).unwrap();
}

#[test]
fn the_loser_of_a_conflict_as_head_is_the_wrong_winner() {
    let mut sim = Sim::new(2);
    sim.write(0, &[put("k", "early")]);
    sim.write(1, &[put("k", "late")]);
    sim.sync_all();
    sim.check().unwrap();
    let loser = sim.acked(0, "k");
    let head = RowHead {
        version: loser,
        deleted: false,
        value: b"early".to_vec(),
    };
    for store in &sim.stores {
        store.tamper_head(&db(), "t", "k", &head);
    }
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    assert_eq!(
        check::check_winners(&view),
        Err(Violation::WrongWinner {
            node: 0,
            row: row("k"),
            head: Some(loser),
            expected: sim.acked(1, "k"),
        })
    );
    assert!(sim.check().is_err());
}

#[test]
fn a_head_an_acknowledged_write_came_after_is_a_causally_later_loss() {
    let mut sim = Sim::new(2);
    sim.write(0, &[put("k", "1")]);
    sim.sync(1, 0);
    sim.write(1, &[put("k", "2")]);
    sim.sync_all();
    let earlier = sim.acked(0, "k");
    let head = RowHead {
        version: earlier,
        deleted: false,
        value: b"1".to_vec(),
    };
    sim.stores[0].tamper_head(&db(), "t", "k", &head);
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    assert_eq!(
        check::check_winners(&view),
        Err(Violation::CausallyLaterLost {
            node: 0,
            row: row("k"),
            head: earlier,
            later: sim.acked(1, "k"),
        })
    );
}

#[test]
fn a_deleted_row_shown_again_is_a_resurrection() {
    let mut sim = Sim::new(2);
    sim.write(0, &[put("k", "1")]);
    sim.sync(1, 0);
    sim.write(1, &[delete("k")]);
    sim.sync_all();
    sim.check().unwrap();
    let tombstone = sim.acked(1, "k");
    // The head still names the delete, but shows the old value: both nodes agree, so only
    // the resurrection check can see it.
    let revived = RowHead {
        version: tombstone,
        deleted: false,
        value: b"1".to_vec(),
    };
    for store in &sim.stores {
        store.tamper_head(&db(), "t", "k", &revived);
    }
    let expected = Violation::Resurrected {
        node: 0,
        row: row("k"),
        delete: tombstone,
        head: Some(tombstone),
    };
    assert_eq!(sim.check(), Err(expected));
}

#[test]
fn a_put_the_delete_came_after_cannot_bring_the_row_back() {
    let mut sim = Sim::new(1);
    sim.write(0, &[put("k", "1")]);
    sim.write(0, &[delete("k")]);
    let put_version = sim.acked(0, "k");
    let old = sim.oracle.writes()[0].version;
    assert_ne!(put_version, old);
    let back = RowHead {
        version: old,
        deleted: false,
        value: b"1".to_vec(),
    };
    sim.stores[0].tamper_head(&db(), "t", "k", &back);
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    assert_eq!(
        check::check_no_resurrection(&view),
        Err(Violation::Resurrected {
            node: 0,
            row: row("k"),
            delete: put_version,
            head: Some(old),
        })
    );
}

#[test]
fn knowledge_merged_without_the_record_claims_what_the_node_lacks() {
    let mut sim = Sim::new(2);
    sim.write(0, &[put("k", "1")]);
    let writer = sim.stores[0].device();
    let mut claim = Knowledge::new();
    claim.insert(
        whole_table(),
        GenVector::from_iter([(writer, Generation::FIRST)]),
    );
    sim.stores[1]
        .apply(&db(), writer, &[], Some(&claim))
        .unwrap();
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    assert_eq!(
        check::check_knowledge(&view),
        Err(Violation::KnowledgeWithoutRecord {
            node: 1,
            db: db(),
            device: writer,
            generation: Generation::FIRST,
            known: Generation::FIRST,
            table: "t".into(),
            row: "k".into(),
            version: sim.acked(0, "k"),
        })
    );
}

#[test]
fn knowledge_of_a_resolution_without_its_link_is_caught_too() {
    let mut sim = Sim::new(3);
    sim.write(0, &[put("k", "a")]);
    sim.write(1, &[put("k", "b")]);
    sim.sync(0, 1);
    let resolver = sim.stores[0].device();
    let link = sim.stores[0]
        .logged(&db())
        .unwrap()
        .into_iter()
        .find(|entry| entry.link.is_some())
        .expect("node 0 resolved the conflict");
    // Node 2 gets node 0's write but neither node 1's (the winner) nor the link, and claims
    // the link's generation.
    let records = [pull_one(&sim.stores[0], &sim.stores[2], "k")];
    sim.stores[2]
        .apply(&db(), resolver, &records, None)
        .unwrap();
    let mut claim = Knowledge::new();
    claim.insert(
        whole_table(),
        GenVector::from_iter([(resolver, link.generation)]),
    );
    sim.stores[2]
        .apply(&db(), resolver, &[], Some(&claim))
        .unwrap();
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    let violation = check::check_knowledge(&view).unwrap_err();
    assert!(
        matches!(&violation, Violation::KnowledgeWithoutRecord { node: 2, generation, .. } if *generation == link.generation),
        "{violation}"
    );
}

/// Node `from`'s own write of `key` as a record, read from its log with nothing else.
fn pull_one(from: &Store, to: &Store, key: &str) -> crate::store::LogRecord {
    let mut knowledge = Knowledge::new();
    knowledge.insert(Scope::new("t", key), GenVector::new());
    let request = PageRequest {
        initiator: to.device(),
        echoes_from: 0,
        knowledge: &knowledge,
        position: 0,
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    let page = from.read_page(&db(), &request).unwrap();
    page.records
        .into_iter()
        .find(|record| {
            record.device() == from.device() && matches!(record.content, RecordContent::Node(_))
        })
        .expect("its own write")
}

#[test]
fn a_clock_reading_below_the_previous_one_is_caught_and_kept() {
    let mut oracle = Oracle::new();
    let at = |wall_nanos| Hlc {
        wall_nanos,
        logical: 0,
    };
    oracle.observe_clock(3, at(5)).unwrap();
    let expected = Violation::ClockWentBack {
        node: 3,
        previous: at(5),
        now: at(4),
    };
    assert_eq!(oracle.observe_clock(3, at(4)), Err(expected.clone()));
    oracle.observe_clock(3, at(9)).unwrap();
    assert_eq!(check::check_clocks(&oracle), Err(expected.clone()));
    assert_eq!(check_all(&oracle, &[], &[]), Err(expected));
}

#[test]
fn a_write_whose_hlc_is_not_above_the_last_reading_is_a_clock_going_back() {
    let mut sim = Sim::new(1);
    let future = Hlc {
        wall_nanos: 10_000 * SECOND,
        logical: 0,
    };
    sim.oracle.observe_clock(0, future).unwrap();
    sim.stores[0].commit(&db(), &[put("k", "1")]).unwrap();
    let violation = sim
        .oracle
        .acknowledged(0, &sim.stores[0], &db(), &[put("k", "1")])
        .unwrap_err();
    assert!(
        matches!(violation, Violation::ClockWentBack { node: 0, previous, .. } if previous == future),
        "{violation}"
    );
}

#[test]
fn a_restart_lowers_the_clock_floor_to_what_the_store_committed() {
    let mut sim = Sim::new(1);
    sim.write(0, &[put("k", "1")]);
    let committed = sim.stores[0].committed_hlc().unwrap();
    assert_eq!(committed, sim.oracle.writes()[0].hlc);
    sim.oracle
        .observe_clock(
            0,
            Hlc {
                wall_nanos: committed.wall_nanos + SECOND,
                logical: 0,
            },
        )
        .unwrap();
    sim.oracle.restarted(0, &sim.stores[0]).unwrap();
    sim.oracle.observe_clock(0, committed).unwrap();
    let below = Hlc {
        wall_nanos: committed.wall_nanos - 1,
        logical: 0,
    };
    assert!(sim.oracle.observe_clock(0, below).is_err());
}

#[test]
fn a_commit_the_row_does_not_show_is_not_applied() {
    let mut sim = Sim::new(1);
    let violation = sim
        .oracle
        .acknowledged(0, &sim.stores[0], &db(), &[put("k", "never committed")])
        .unwrap_err();
    assert!(
        matches!(&violation, Violation::NotApplied { node: 0, row: r, .. } if *r == row("k")),
        "{violation}"
    );
    sim.write(0, &[put("k", "1")]);
    let violation = sim
        .oracle
        .acknowledged(0, &sim.stores[0], &db(), &[delete("k")])
        .unwrap_err();
    assert!(
        matches!(violation, Violation::NotApplied { .. }),
        "{violation}"
    );
}

/// Tells the oracle node 0's store `before` was replaced by the restored `sim.stores[0]`,
/// with node 1 the only other holder, sharing every table or none; how many writes it marked.
fn oracle_restore(sim: &mut Sim, before: &Store, node_1_shares: bool) -> usize {
    let others = [(1, &sim.stores[1])];
    sim.oracle
        .restored(0, before, &sim.stores[0], &others, &|_, _| node_1_shares)
        .unwrap()
}

/// Node 0 writes k1, is backed up, writes k2 (which node 1 receives or not), and is restored
/// from the backup.
fn restore_after_second_write(sent: bool) -> (Sim, Store) {
    let mut sim = Sim::new(2);
    sim.write(0, &[put("k1", "1")]);
    sim.sync(1, 0);
    let backup = copy(&sim.stores[0]);
    sim.write(0, &[put("k2", "2")]);
    if sent {
        sim.sync(1, 0);
    }
    let restored = open(backup, &sim.times[0]);
    let before = std::mem::replace(&mut sim.stores[0], restored);
    (sim, before)
}

#[test]
fn a_write_only_the_restored_node_held_is_lost_by_restore_and_excused() {
    let (mut sim, before) = restore_after_second_write(false);
    let unreported = sim.check().unwrap_err();
    assert!(
        matches!(&unreported, Violation::WriteLost { node: 0, row, held: false, .. } if row.row == "k2"),
        "{unreported}"
    );
    let lost = oracle_restore(&mut sim, &before, true);
    assert_eq!(lost, 1);
    assert!(sim.oracle.writes()[1].lost_by_restore);
    sim.check().unwrap();
}

#[test]
fn a_write_a_restore_took_from_a_node_that_then_left_is_excused_there_only() {
    let (mut sim, before) = restore_after_second_write(true);
    let lost = oracle_restore(&mut sim, &before, true);
    assert_eq!(lost, 0, "node 1 holds k2");
    // Node 0 leaves the share: nothing serves it k2 again.
    sim.shares[0].nodes = vec![1];
    let stuck = sim.check().unwrap_err();
    assert!(
        matches!(&stuck, Violation::WriteLost { node: 0, row, .. } if row.row == "k2"),
        "{stuck}"
    );
    assert_eq!(
        sim.oracle.cut_off(0, &sim.stores[0], "t").unwrap(),
        1,
        "k2 only: k1, which node 0 still holds, stays required"
    );
    assert!(sim.oracle.writes()[1].lost_by_restore);
    sim.check().unwrap();
}

#[test]
fn a_write_only_a_node_that_stopped_sharing_held_is_stranded() {
    // Node 1 received k2, then node 0 lost it to a restore.
    let (mut sim, before) = restore_after_second_write(true);
    let lost = oracle_restore(&mut sim, &before, true);
    assert_eq!(lost, 0, "node 1 holds k2 and shares t");
    // Node 1 stops sharing t: nothing brings k2 back to node 0.
    sim.shares[0].nodes = vec![0];
    assert!(sim.check().is_err());
    let sharing = [(0, &sim.stores[0])];
    assert_eq!(sim.oracle.stranded("t", &sharing).unwrap(), 1);
    sim.check().unwrap();
}

#[test]
fn a_restore_counts_only_holders_that_share_the_table() {
    let (mut sim, before) = restore_after_second_write(true);
    let lost = oracle_restore(&mut sim, &before, false);
    assert_eq!(lost, 1, "node 1 holds k2 but cannot serve t");
}

#[test]
fn a_write_another_node_received_survives_the_restore() {
    let (mut sim, before) = restore_after_second_write(true);
    let lost = oracle_restore(&mut sim, &before, true);
    assert_eq!(lost, 0, "node 1 holds k2");
    let view = View::read(&sim.oracle, &sim.live(), &sim.shares).unwrap();
    let missing = check::check_no_write_lost(&view).unwrap_err();
    assert!(
        matches!(&missing, Violation::WriteLost { node: 0, row, .. } if row.row == "k2"),
        "{missing}"
    );
    // The restored store moves to a new device, so node 1 sends back what it lacks.
    let device = sim.stores[0].device();
    sim.stores[0]
        .start_epoch(device, "restored in a test".into(), None)
        .unwrap()
        .expect("an epoch");
    sim.sync_all();
    sim.check().unwrap();
}

#[test]
fn violations_name_the_nodes_row_and_versions() {
    let lost = Violation::WriteLost {
        node: 2,
        row: Box::new(row("k")),
        version: Version(0xab),
        writer: 0,
        head: Some(Version(0xcd)),
        held: true,
        device: DeviceId(0xef),
        generation: Generation::new(4),
        known: Generation::new(3),
    };
    assert_eq!(
        lost.to_string(),
        "node 2 lost the write 00000000000000ab of db/t:k acknowledged by node 0 (logged as \
         00000000000000ef:4; the node's knowledge covers that device up to 3 there): not \
         reachable from its head 00000000000000cd"
    );
    let diverged = Violation::Diverged {
        nodes: (0, 3),
        row: row("p1"),
        heads: (Some(Version(1)), None),
    };
    assert_eq!(
        diverged.to_string(),
        "nodes 0 and 3 diverged at db/t:p1, a row they share: heads 0000000000000001 and (none)"
    );
}

/// Node 0's clock is an hour ahead, past the drift node 1's clock follows: node 1's write on
/// top of node 0's was stamped below it. Node 2's concurrent write then beat node 1's where
/// it met it first, lost to node 0's where that came first, and the two resolutions left
/// nodes on different heads for good.
#[test]
fn a_write_on_top_of_one_from_a_clock_far_ahead_wins_the_same_way_everywhere() {
    let mut sim = Sim::new(4);
    let base = 1_000 * SECOND;
    sim.times[0].set(base + 3_600 * SECOND);
    sim.times[1].set(base);
    sim.times[2].set(base + 120 * SECOND);
    sim.times[3].set(base);
    sim.write(0, &[put("k", "far ahead")]);
    sim.write(2, &[put("k", "concurrent")]);
    sim.sync(3, 0);
    sim.sync(3, 2);
    sim.sync(1, 0);
    sim.write(1, &[put("k", "on top")]);
    assert!(sim.stores[1].clock().last() < sim.oracle.writes()[0].hlc);
    sim.sync(2, 1);
    sim.sync(3, 1);
    sim.sync_all();
    sim.check().unwrap();
    assert_eq!(sim.head(2, "k").value, b"on top");
}

/// An epoch (after an unclean stop or a restore) logs the node's own records again under its
/// new device. Node 0's resolution naming node 2's write as winner sat in node 2's log before
/// that write's new entry, so a node pulling from node 2 afterwards met the link first and
/// refused the page ("names version ... that was never sent"), every time it asked.
#[test]
fn a_peer_pulls_a_relogged_write_before_a_resolution_naming_it() {
    let mut sim = Sim::new(3);
    sim.write(0, &[put("k", "early")]);
    sim.write(2, &[put("k", "late")]);
    assert_eq!(sim.sync(0, 2).resolutions.len(), 1);
    sim.sync(2, 0);
    let device = sim.stores[2].device();
    let epoch = sim.stores[2]
        .start_epoch(device, "an unclean stop".into(), None)
        .unwrap()
        .expect("an epoch");
    assert_eq!(epoch.relogged, 1);
    sim.sync(1, 2);
    sim.sync_all();
    sim.check().unwrap();
}
