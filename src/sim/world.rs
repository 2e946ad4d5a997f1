//! One simulated run: `nodes` real [`Node`]s on memory stores, on one thread under a paused
//! tokio clock (virtual time: a run of minutes takes milliseconds), linked by the engine's own
//! link loop (`sync::link`) over [`Network`], driven by one seed. Each node's environment
//! gives it a virtual wall clock (with the run's clock jumps), a seeded random source and
//! commits that run inline, so nothing in a run depends on the machine: the same seed replays
//! the same run, event for event ([`Outcome::trace`]).
//!
//! The script, drawn from the seed: puts, deletes and batches from every node over a small key
//! space (so writes conflict), and, with faults on, partitions and repairs, lost pages
//! (connections breaking), crashes and restarts (the memory store keeps exactly what was
//! committed), restarts from an older copy of a node's store (a restored backup), and clock
//! jumps. Then faults stop: partitions heal, every node runs, and once the run settles the
//! oracle's checks must hold (`sim::check`): convergence, no acknowledged write lost, the
//! right winner, no resurrection, knowledge only of records held, clocks never going back.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use syncbase_storage::{MemoryStorage, Storage};
use tokio_util::sync::CancellationToken;

use crate::clock::TimeSource;
use crate::env::{Blocking, Env, Random, SeededRandom};
use crate::genvec::Scope;
use crate::identity::NodeIdentity;
use crate::names::{DbName, RowKey, TableName};
use crate::node::{Node, NodeParts};
use crate::retry::Backoff;
use crate::sim::check::{Share, View, check_all, check_convergence};
use crate::sim::net::{Faults, Network};
use crate::sim::oracle::Oracle;
use crate::store::{Mutation, Store};
use crate::sync::link::{follow_peers, keep_linked};
use crate::sync::membership;
use crate::sync::peers::PeerConfig;
use crate::syncgroup::access::Level;
use crate::syncgroup::{Permissions, Spec, SyncgroupName, Tag, VersionStamp};

/// The database every simulated node shares, the table every node declares to every other
/// (`TABLE`), and the table of the run's syncgroup (`SHARED`), which nodes join, leave and are
/// ejected from as the run goes.
const DB: &str = "db";
const TABLE: &str = "t";
const SHARED: &str = "s";
/// The syncgroup's name: it routes to node 0, its creator and admin.
const SYNCGROUP: &str = "node0:7000/sg";
/// Rows the workload writes: few, so concurrent writes to one row are common.
const KEYS: u64 = 24;
/// Wall time at the start of every run (virtual: 2026-01-01).
const EPOCH_NANOS: i64 = 1_767_225_600_000_000_000;
/// How long the run may take to settle once faults stop, in rounds of [`SETTLE_ROUND`].
const SETTLE_ROUNDS: u32 = 12;
const SETTLE_ROUND: Duration = Duration::from_secs(10);
/// Fastest and slowest redial of a link.
const REDIAL: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// What one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Nodes, 3 to 16.
    pub nodes: usize,
    /// Workload steps (writes and, with faults on, faults).
    pub operations: usize,
    /// Whether the script injects faults.
    pub faults: bool,
    /// Whether nodes join (by invites over the network), leave and are ejected from the
    /// run's syncgroup as it goes (else only node 0 is in it).
    pub membership: bool,
    /// Whether every running node collects history after every step (`node::collect`), so
    /// peers below a floor catch up by state.
    pub collect: bool,
    /// Whether the outcome keeps every event's text ([`Outcome::log`]).
    pub keep_trace: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            nodes: 5,
            operations: 200,
            faults: true,
            membership: true,
            collect: true,
            keep_trace: false,
        }
    }
}

/// What a run that passed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub seed: u64,
    /// xxh3 of every event, in order: equal for two runs of one seed.
    pub trace: u64,
    /// Events in the trace.
    pub events: u64,
    /// Writes acknowledged to the workload.
    pub acknowledged: usize,
    /// Crashes, restores from older copies, partitions, clock jumps injected.
    pub faults: usize,
    /// Virtual time the run took, in milliseconds.
    pub virtual_millis: u64,
    /// Every event, when [`SimConfig::keep_trace`] asked for them.
    pub log: Vec<String>,
}

/// Why a run failed, with what replays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub seed: u64,
    pub reason: String,
    /// The command that replays this run.
    pub replay: String,
    /// Every event up to the failure, when [`SimConfig::keep_trace`] asked for them.
    pub log: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed: {}\nreplay: {}",
            self.seed, self.reason, self.replay
        )
    }
}

/// Runs seed `seed` under `config` to the end and checks it.
pub fn run(seed: u64, config: &SimConfig) -> Result<Outcome, Failure> {
    let fail = |reason: String, log: Vec<String>| Failure {
        seed,
        reason,
        log,
        replay: format!(
            "cargo run --release -- sim --seed {seed} --nodes {} --operations {}{}{}{}",
            config.nodes,
            config.operations,
            if config.faults { "" } else { " --no-faults" },
            if config.membership {
                ""
            } else {
                " --no-membership"
            },
            if config.collect { "" } else { " --no-collect" }
        ),
    };
    if !(3..=16).contains(&config.nodes) {
        return Err(fail(
            format!(
                "InvalidArgument: a run has 3 to 16 nodes, not {}",
                config.nodes
            ),
            Vec::new(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|error| fail(format!("Internal: no runtime: {error}"), Vec::new()))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut world = World::new(seed, config)
            .await
            .map_err(|reason| fail(reason, Vec::new()))?;
        let network = world.network.clone();
        let outcome = match world.script().await {
            Ok(()) => world.settle().await,
            Err(reason) => Err(reason),
        };
        outcome.map_err(|reason| fail(reason, network.take_trace()))
    })
}

/// A wall clock in virtual time: the run's start plus the paused tokio clock's elapsed time,
/// plus this node's jumps.
struct SimTime {
    start: tokio::time::Instant,
    jump_nanos: AtomicI64,
}

impl TimeSource for SimTime {
    fn now_nanos(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_nanos()).unwrap_or(i64::MAX);
        EPOCH_NANOS
            .saturating_add(elapsed)
            .saturating_add(self.jump_nanos.load(Ordering::SeqCst))
    }
}

/// What a node is in the run's syncgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Never joined: must hold nobody else's rows of the syncgroup's table.
    Outside,
    /// Node 0: created it, its admin.
    Creator,
    Writer,
    Reader,
    Left,
    Ejected,
}

impl Role {
    /// Whether a node in this role shares the syncgroup's table (serves and receives it).
    fn shares(self) -> bool {
        matches!(self, Role::Creator | Role::Writer | Role::Reader)
    }
}

/// One simulated node: what survives a crash (its storage, identity, clock) and the running
/// node, if up.
struct Member {
    role: Role,
    address: String,
    identity: NodeIdentity,
    storage: Arc<MemoryStorage>,
    time: Arc<SimTime>,
    /// The running node and what stops its tasks; `None` while crashed.
    running: Option<(Arc<Node>, CancellationToken)>,
    /// The last node that ran, kept after a crash so the oracle can read its store.
    last: Option<Arc<Node>>,
    /// Older copies of the store (backups), newest last.
    copies: Vec<Arc<MemoryStorage>>,
    incarnation: u64,
}

struct World {
    seed: u64,
    config: SimConfig,
    random: SeededRandom,
    network: Network<Node>,
    members: Vec<Member>,
    oracle: Rc<RefCell<Oracle>>,
    faults: usize,
    acknowledged: usize,
}

impl World {
    async fn new(seed: u64, config: &SimConfig) -> Result<World, String> {
        let random = SeededRandom::new(seed);
        let faults = if config.faults {
            Faults::default()
        } else {
            Faults {
                loss_per_mille: 0,
                ..Faults::default()
            }
        };
        let network = Network::new(
            Arc::new(SeededRandom::new(seed ^ 0x6e65_7477)),
            faults,
            config.keep_trace,
        );
        let start = tokio::time::Instant::now();
        let mut members = Vec::new();
        for index in 0..config.nodes {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&seed.to_le_bytes());
            key[8..16].copy_from_slice(&(index as u64).to_le_bytes());
            let identity = NodeIdentity::from_seed(key).map_err(|error| format!("{error:#}"))?;
            members.push(Member {
                role: if index == 0 {
                    Role::Creator
                } else {
                    Role::Outside
                },
                address: format!("node{index}:7000"),
                identity,
                storage: Arc::new(MemoryStorage::new()),
                time: Arc::new(SimTime {
                    start,
                    jump_nanos: AtomicI64::new(0),
                }),
                running: None,
                last: None,
                copies: Vec::new(),
                incarnation: 0,
            });
        }
        let mut world = World {
            seed,
            config: *config,
            random,
            network,
            members,
            oracle: Rc::new(RefCell::new(Oracle::new())),
            faults: 0,
            acknowledged: 0,
        };
        for index in 0..config.nodes {
            world.start(index)?;
            world.declare_peers(index).await?;
        }
        world.create_syncgroup().await?;
        Ok(world)
    }

    /// A uniform draw in `0..n`.
    fn below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.random.next_u64().unwrap_or(0) % n
    }

    fn up(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| self.members[*index].running.is_some())
            .collect()
    }

    fn down(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| self.members[*index].running.is_none())
            .collect()
    }

    fn pick(&self, among: &[usize]) -> Option<usize> {
        (!among.is_empty()).then(|| among[self.below(among.len() as u64) as usize])
    }

    /// Starts member `index` on its storage: opens a node, puts it on the network and starts
    /// its link loop.
    fn start(&mut self, index: usize) -> Result<(), String> {
        let member = &mut self.members[index];
        member.incarnation += 1;
        let env = Env {
            time: member.time.clone(),
            random: Arc::new(SeededRandom::new(
                self.seed ^ ((index as u64) << 48) ^ member.incarnation.wrapping_mul(0x9e37_79b9),
            )),
            blocking: Blocking::Inline,
        };
        let storage: Arc<dyn Storage> = member.storage.clone();
        let node = NodeParts::simulated(storage, member.identity.clone(), env.clone())
            .and_then(Node::assemble)
            .map_err(|error| format!("node {index} does not open: {error:#}"))?;
        let node = Arc::new(node);
        let cancel = CancellationToken::new();
        self.network.attach(
            &member.address,
            member.identity.fingerprint().clone(),
            node.clone(),
        );
        let dialer_network = self.network.clone();
        let address = member.address.clone();
        let random = env.random.clone();
        let host = node.clone();
        tokio::task::spawn_local(follow_peers(
            node.clone(),
            move |peer, link| {
                let backoff = Backoff::new(REDIAL.0, REDIAL.1, random.clone());
                let dialer = dialer_network.dialer(&address);
                tokio::task::spawn_local(keep_linked(host.clone(), dialer, peer, backoff, link));
            },
            cancel.clone(),
        ));
        node.set_peer_address(member.address.clone());
        member.running = Some((node.clone(), cancel));
        member.last = Some(node.clone());
        let db = DbName::parse(DB).map_err(|error| error.to_string())?;
        if !node
            .store()
            .has_database(&db)
            .map_err(|error| error.to_string())?
        {
            node.store()
                .create_database(&db)
                .map_err(|error| format!("node {index} cannot create {DB}: {error}"))?;
        }
        Ok(())
    }

    /// Declares every other member to member `index` as a peer sharing the whole table.
    async fn declare_peers(&self, index: usize) -> Result<(), String> {
        let Some((node, _)) = &self.members[index].running else {
            return Ok(());
        };
        for (other, member) in self.members.iter().enumerate() {
            if other == index {
                continue;
            }
            let peer = PeerConfig::new(
                &member.address,
                member.identity.fingerprint().clone(),
                DB,
                vec![Scope::new(TABLE, "")],
            )
            .map_err(|error| error.to_string())?;
            node.add_peer(peer)
                .await
                .map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    /// Crashes member `index`: its tasks stop where they are, its connections break; its
    /// storage keeps exactly what it committed.
    fn crash(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let Some((_, cancel)) = member.running.take() {
            cancel.cancel();
            self.network.remove(&member.address);
        }
    }

    /// Restarts a crashed member on its own storage.
    fn restart(&mut self, index: usize) -> Result<(), String> {
        self.start(index)?;
        let node = self.node(index)?;
        self.oracle
            .borrow_mut()
            .restarted(index, node.store())
            .map_err(|violation| violation.to_string())
    }

    /// Crashes member `index` and starts it again from its oldest kept copy (a restored
    /// backup): the writes only it held since are lost, by design.
    fn restore(&mut self, index: usize) -> Result<(), String> {
        if self.members[index].copies.is_empty() {
            return Ok(());
        }
        self.crash(index);
        let copy = self.members[index].copies.remove(0);
        let before = self.members[index].last.clone();
        self.members[index].storage = Arc::new(copy.copy());
        self.start(index)?;
        let after = self.node(index)?;
        // The copy may predate a join or a leave: the node is what its store says.
        let db = DbName::parse(DB).map_err(|error| error.to_string())?;
        let held = after
            .store()
            .syncgroups(&db)
            .map_err(|error| error.to_string())?
            .into_iter()
            .find(|view| view.record.sg.name == Self::syncgroup_name());
        if self.members[index].role != Role::Ejected {
            self.members[index].role = match held {
                None => Role::Outside,
                Some(view) if view.local.left => Role::Left,
                Some(view)
                    if view
                        .record
                        .sg
                        .allows(Tag::Write, after.identity().fingerprint()) =>
                {
                    Role::Writer
                }
                Some(_) => Role::Reader,
            };
        }
        self.network.note(&format!(
            "restore node{index}: now {:?}",
            self.members[index].role
        ));
        let others: Vec<(usize, Arc<Node>)> = (0..self.members.len())
            .filter(|other| *other != index)
            .filter_map(|other| self.members[other].last.clone().map(|node| (other, node)))
            .collect();
        let others: Vec<(usize, &Store)> = others
            .iter()
            .map(|(other, node)| (*other, node.store()))
            .collect();
        if let Some(before) = before {
            let roles: Vec<Role> = self.members.iter().map(|member| member.role).collect();
            let relays = |other: usize, table: &str| table != SHARED || roles[other].shares();
            let lost = self
                .oracle
                .borrow_mut()
                .restored(index, before.store(), after.store(), &others, &relays)
                .map_err(|violation| violation.to_string())?;
            self.network.note(&format!(
                "restore node{index}: {lost} writes lost by the restore"
            ));
        }
        if !self.members[index].role.shares() {
            self.cut_off(index)?;
        }
        Ok(())
    }

    fn node(&self, index: usize) -> Result<Arc<Node>, String> {
        self.members[index]
            .running
            .as_ref()
            .map(|(node, _)| node.clone())
            .ok_or_else(|| format!("node {index} is down"))
    }

    /// The scripted part of the run: `operations` steps, each a write or a fault, a few
    /// virtual milliseconds apart.
    async fn script(&mut self) -> Result<(), String> {
        for step in 0..self.config.operations {
            let roll = self.below(100);
            if self.config.faults && roll >= 88 {
                self.fault()?;
            } else if self.config.membership && (80..88).contains(&roll) {
                self.membership().await?;
            } else if let Some(index) = self.pick(&self.up()) {
                self.write(index, step, roll).await?;
            }
            self.observe_clocks()?;
            self.collect().await?;
            tokio::time::sleep(Duration::from_millis(self.below(120))).await;
        }
        Ok(())
    }

    /// With [`SimConfig::collect`], one collection pass on every running node.
    async fn collect(&self) -> Result<(), String> {
        if !self.config.collect {
            return Ok(());
        }
        let db = DbName::parse(DB).map_err(|error| error.to_string())?;
        for index in self.up() {
            let node = self.node(index)?;
            if !node
                .store()
                .has_database(&db)
                .map_err(|error| error.to_string())?
            {
                continue;
            }
            match node.collect(&db).await {
                Ok(pass) if pass.collected != Default::default() => self.network.note(&format!(
                    "collect node{index} {:?} cut {:?}",
                    pass.collected, pass.cut
                )),
                Ok(_) => {}
                Err(error) => return Err(format!("collect node{index}: {error}")),
            }
        }
        Ok(())
    }

    /// One app write at member `index`: a put (most), a delete, or a batch.
    async fn write(&mut self, index: usize, step: usize, roll: u64) -> Result<(), String> {
        let node = self.node(index)?;
        // The syncgroup's table only from its writers: a write there from anyone else is
        // refused locally or never shared, and so is no promise the oracle holds others to.
        let may_share = matches!(self.members[index].role, Role::Creator | Role::Writer);
        let table = if may_share && self.below(2) == 0 {
            SHARED
        } else {
            TABLE
        };
        let mutations: Vec<Mutation> = match roll {
            0..55 => vec![self.put(table, index, step, 0)],
            55..68 => vec![self.delete(table)],
            _ => (0..2 + self.below(3))
                .map(|i| {
                    if self.below(4) == 0 {
                        self.delete(table)
                    } else {
                        self.put(table, index, step, i)
                    }
                })
                .collect(),
        };
        let db = DbName::parse(DB).map_err(|error| error.to_string())?;
        match node.commit(db.clone(), mutations.clone()).await {
            Ok(_) => {
                self.acknowledged += mutations.len();
                let writes = self
                    .oracle
                    .borrow_mut()
                    .acknowledged(index, node.store(), &db, &mutations)
                    .map_err(|violation| violation.to_string())?;
                self.network
                    .note(&format!("ack node{index}: {}", writes.join(", ")));
                Ok(())
            }
            Err(error) => {
                self.network.note(&format!("refused node{index}: {error}"));
                Ok(())
            }
        }
    }

    fn key(&self) -> RowKey {
        RowKey::parse(&format!("k{:02}", self.below(KEYS))).expect("a valid key")
    }

    fn put(&self, table: &str, index: usize, step: usize, part: u64) -> Mutation {
        Mutation::Put {
            table: TableName::parse(table).expect("a valid table"),
            key: self.key(),
            value: format!("node{index}-step{step}-{part}").into_bytes(),
        }
    }

    fn delete(&self, table: &str) -> Mutation {
        Mutation::Delete {
            table: TableName::parse(table).expect("a valid table"),
            key: self.key(),
        }
    }

    fn syncgroup_name() -> SyncgroupName {
        SyncgroupName::parse(SYNCGROUP).expect("a valid syncgroup name")
    }

    /// Node 0 creates the run's syncgroup over the table `SHARED`, as its only admin.
    async fn create_syncgroup(&mut self) -> Result<(), String> {
        let node = self.node(0)?;
        let spec = Spec {
            description: String::new(),
            perms: Permissions::default(),
            prefixes: vec![Scope::new(SHARED, "")],
            mount_tables: Vec::new(),
            is_private: false,
        };
        let db = DbName::parse(DB).map_err(|error| error.to_string())?;
        node.create_syncgroup(db, Self::syncgroup_name(), spec)
            .await
            .map_err(|error| format!("node 0 cannot create the syncgroup: {error}"))?;
        self.network.note("create syncgroup");
        Ok(())
    }

    /// One syncgroup change: a node joins with an invite node 0 mints (read-write mostly,
    /// some read-only), a member leaves, or node 0 ejects a member.
    async fn membership(&mut self) -> Result<(), String> {
        let with_role = |roles: &[Role]| -> Vec<usize> {
            self.up()
                .into_iter()
                .filter(|index| roles.contains(&self.members[*index].role))
                .collect()
        };
        let outside = with_role(&[Role::Outside]);
        let members = with_role(&[Role::Writer, Role::Reader]);
        let roll = self.below(100);
        if roll < 70 || members.is_empty() {
            if let (Some(joiner), true) = (self.pick(&outside), self.members[0].running.is_some()) {
                let level = if self.below(5) == 0 {
                    Level::Read
                } else {
                    Level::ReadWrite
                };
                self.join(joiner, level).await?;
            }
        } else if let Some(member) = self.pick(&members) {
            if roll < 85 {
                let node = self.node(member)?;
                node.leave(Self::syncgroup_name())
                    .await
                    .map_err(|error| format!("node {member} cannot leave: {error}"))?;
                self.members[member].role = Role::Left;
                self.network.note(&format!("leave node{member}"));
                self.cut_off(member)?;
            } else if self.members[0].running.is_some() {
                let admin = self.node(0)?;
                let me = admin.identity().fingerprint().clone();
                let them = self.members[member].identity.fingerprint().clone();
                match admin.eject(me, Self::syncgroup_name(), them).await {
                    Ok(_) => {
                        self.members[member].role = Role::Ejected;
                        self.network.note(&format!("eject node{member}"));
                        self.cut_off(member)?;
                    }
                    Err(error) => self.network.note(&format!("eject node{member}: {error}")),
                }
            }
        }
        Ok(())
    }

    /// Node `index` left or was ejected: the oracle excuses its writes of the syncgroup's
    /// table that a restore took from it (`Oracle::cut_off`).
    fn cut_off(&mut self, index: usize) -> Result<(), String> {
        let Some(node) = self.members[index].last.clone() else {
            return Ok(());
        };
        let lost = self
            .oracle
            .borrow_mut()
            .cut_off(index, node.store(), SHARED)
            .map_err(|violation| violation.to_string())?;
        if lost > 0 {
            self.network.note(&format!(
                "node{index}: {lost} writes of {SHARED} a restore took and it may no longer read"
            ));
        }
        let sharing: Vec<(usize, Arc<Node>)> = (0..self.members.len())
            .filter(|other| self.members[*other].role.shares())
            .filter_map(|other| self.members[other].last.clone().map(|node| (other, node)))
            .collect();
        let sharing: Vec<(usize, &Store)> = sharing
            .iter()
            .map(|(other, node)| (*other, node.store()))
            .collect();
        let stranded = self
            .oracle
            .borrow_mut()
            .stranded(SHARED, &sharing)
            .map_err(|violation| violation.to_string())?;
        if stranded > 0 {
            self.network.note(&format!(
                "node{index}: {stranded} writes of {SHARED} only it held since their writer's restore"
            ));
        }
        Ok(())
    }

    /// Node `joiner` joins at node 0 with an invite at `level`, over the network.
    async fn join(&mut self, joiner: usize, level: Level) -> Result<(), String> {
        let admin = self.node(0)?;
        let invite = admin
            .mint_invite(Self::syncgroup_name(), level, None, 1)
            .await
            .map_err(|error| format!("node 0 cannot mint an invite: {error}"))?;
        let node = self.node(joiner)?;
        let dialer = self.network.dialer(&self.members[joiner].address);
        let joined = membership::join(
            &node,
            &dialer,
            &invite.admin,
            &invite.address,
            &invite.name,
            Some(&invite.secret),
        )
        .await;
        // The join went over the network: the joiner may have crashed meanwhile.
        match joined {
            Ok(_) => {
                self.members[joiner].role = match level {
                    Level::Read => Role::Reader,
                    _ => Role::Writer,
                };
                self.network.note(&format!("join node{joiner} {level:?}"));
            }
            Err(error) => self.network.note(&format!("join node{joiner}: {error}")),
        }
        Ok(())
    }

    /// One fault, drawn from the seed.
    fn fault(&mut self) -> Result<(), String> {
        self.faults += 1;
        let members = self.members.len() as u64;
        let a = self.below(members) as usize;
        let b = (a + 1 + self.below(members - 1) as usize) % self.members.len();
        let (first, second) = (
            self.members[a].address.clone(),
            self.members[b].address.clone(),
        );
        match self.below(100) {
            0..25 => self.network.cut(&first, &second),
            25..45 => self.network.heal(&first, &second),
            45..58 => {
                if self.up().len() > 2 {
                    self.network.note(&format!("crash {first}"));
                    self.crash(a);
                }
            }
            58..70 => {
                if let Some(index) = self.pick(&self.down()) {
                    self.network.note(&format!("restart node{index}"));
                    self.restart(index)?;
                }
            }
            70..76 => {
                // Not node 0, the syncgroup's only admin: a restored sole admin cannot take
                // back the syncgroup versions it wrote after its backup (only an admin's
                // relay is taken), a limit ARCHITECTURE.md lists ("Epochs: not covered").
                // Nor a node that left or was ejected: it may no longer read the syncgroup's
                // table, so its own writes there that only others hold cannot come back.
                if a != 0
                    && matches!(
                        self.members[a].role,
                        Role::Outside | Role::Writer | Role::Reader
                    )
                    && self.members[a].running.is_some()
                    && !self.members[a].copies.is_empty()
                {
                    self.network.note(&format!("restore {first}"));
                    self.restore(a)?;
                }
            }
            76..88 => {
                let jump = (self.below(240) as i64 - 120) * 1_000_000_000;
                self.members[a]
                    .time
                    .jump_nanos
                    .fetch_add(jump, Ordering::SeqCst);
                self.network.note(&format!("clock {first} {jump:+}"));
            }
            _ => {
                let copy = Arc::new(self.members[a].storage.copy());
                self.members[a].copies.push(copy);
                self.network.note(&format!("backup {first}"));
            }
        }
        Ok(())
    }

    /// Hands every running node's clock reading to the oracle.
    fn observe_clocks(&self) -> Result<(), String> {
        let mut oracle = self.oracle.borrow_mut();
        for index in self.up() {
            let node = self.node(index)?;
            oracle
                .observe_clock(index, node.store().clock().last())
                .map_err(|violation| violation.to_string())?;
        }
        Ok(())
    }

    /// Ends the faults, brings every node up, lets the run settle and checks it.
    async fn settle(mut self) -> Result<Outcome, String> {
        self.network.set_faults(Faults {
            delay_ms: (1, 40),
            loss_per_mille: 0,
        });
        self.network.heal_all();
        for index in self.down() {
            self.restart(index)?;
        }
        let shares = self.shares();
        let mut verdict = Err("never checked".to_owned());
        for _ in 0..SETTLE_ROUNDS {
            tokio::time::sleep(SETTLE_ROUND).await;
            self.observe_clocks()?;
            self.collect().await?;
            let nodes: Vec<(usize, Arc<Node>)> = self
                .up()
                .into_iter()
                .map(|index| (index, self.node(index)))
                .map(|(i, n)| Ok((i, n?)))
                .collect::<Result<_, String>>()?;
            let stores: Vec<(usize, &Store)> = nodes
                .iter()
                .map(|(index, node)| (*index, node.store()))
                .collect();
            let oracle = self.oracle.borrow();
            let converged = View::read(&oracle, &stores, &shares)
                .and_then(|view| check_convergence(&view))
                .is_ok();
            let metadata = self.check_syncgroup_converged();
            verdict = check_all(&oracle, &stores, &shares)
                .map_err(|violation| violation.to_string())
                .and(metadata.clone());
            if converged && metadata.is_ok() {
                break;
            }
        }
        verdict?;
        self.check_nothing_shared_outside()?;
        self.check_links_up()?;
        for index in self.up() {
            self.crash(index);
        }
        let (trace, events) = self.network.trace();
        Ok(Outcome {
            seed: self.seed,
            trace,
            events,
            acknowledged: self.acknowledged,
            faults: self.faults,
            virtual_millis: u64::try_from(self.members[0].time.start.elapsed().as_millis())
                .unwrap_or(u64::MAX),
            log: self.network.take_trace(),
        })
    }

    /// Every node shares `TABLE` with every other; the syncgroup's members at the end
    /// (creator, writers, readers) share `SHARED`.
    fn shares(&self) -> Vec<Share> {
        let db = DbName::parse(DB).expect("a valid database name");
        vec![
            Share {
                db: db.clone(),
                scope: Scope::new(TABLE, ""),
                nodes: (0..self.members.len()).collect(),
            },
            Share {
                db,
                scope: Scope::new(SHARED, ""),
                nodes: (0..self.members.len())
                    .filter(|index| {
                        matches!(
                            self.members[*index].role,
                            Role::Creator | Role::Writer | Role::Reader
                        )
                    })
                    .collect(),
            },
        ]
    }

    /// Status tells the truth: once the run settled with every node up and no partition,
    /// every node reports each of its peers connected.
    fn check_links_up(&self) -> Result<(), String> {
        for index in self.up() {
            let node = self.node(index)?;
            for (peer, status) in node.peers().list() {
                if !status.connected {
                    return Err(format!(
                        "node {index} reports its link to {} down though both are up and \
                         reachable (last error: {:?})",
                        peer.address, status.last_error
                    ));
                }
            }
        }
        Ok(())
    }

    /// Who may read what: a node that never joined the syncgroup holds no row of its table
    /// that another node wrote.
    /// Syncgroup metadata converges too: every member (creator, writers, readers, all up once
    /// faults stop) holds the same version of the syncgroup as node 0, its admin.
    fn check_syncgroup_converged(&self) -> Result<(), String> {
        let db = DbName::parse(DB).map_err(|error| error.to_string())?;
        let version = |index: usize| -> Result<Option<VersionStamp>, String> {
            Ok(self
                .node(index)?
                .store()
                .syncgroups(&db)
                .map_err(|error| error.to_string())?
                .into_iter()
                .find(|view| view.record.sg.name == Self::syncgroup_name())
                .map(|view| view.record.stamp))
        };
        let admin = version(0)?;
        for index in self.up() {
            if index == 0 || !self.members[index].role.shares() {
                continue;
            }
            let held = version(index)?;
            if held != admin {
                return Err(format!(
                    "node {index}, a member, holds syncgroup version {} but node 0, its \
                     admin, holds {}",
                    stamp_text(held.as_ref()),
                    stamp_text(admin.as_ref())
                ));
            }
        }
        Ok(())
    }

    fn check_nothing_shared_outside(&self) -> Result<(), String> {
        let db = DbName::parse(DB).map_err(|error| error.to_string())?;
        for index in self.up() {
            if self.members[index].role != Role::Outside {
                continue;
            }
            let node = self.node(index)?;
            let heads = node
                .store()
                .heads_under(&db, &Scope::new(SHARED, ""))
                .map_err(|error| error.to_string())?;
            let own = node.store().device().lineage();
            for row in heads.keys() {
                let dag = node
                    .store()
                    .row_dag(&db, SHARED, row)
                    .map_err(|error| error.to_string())?;
                if let Some(foreign) = dag
                    .nodes
                    .values()
                    .find(|dag_node| dag_node.device.lineage() != own)
                {
                    return Err(format!(
                        "node {index} never joined the syncgroup yet holds a write of row \
                         {SHARED}:{row} by device {:016x}",
                        foreign.device.0
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A syncgroup version as `version@device:generation (HLC wall.logical)`, or `none`.
fn stamp_text(stamp: Option<&VersionStamp>) -> String {
    stamp.map_or_else(
        || "none".to_owned(),
        |stamp| {
            format!(
                "{}@{:016x}:{} (HLC {}.{})",
                stamp.version.to_hex(),
                stamp.device.0,
                stamp.generation,
                stamp.hlc.wall_nanos,
                stamp.hlc.logical
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_run_event_for_event() {
        let config = SimConfig {
            nodes: 3,
            operations: 60,
            faults: true,
            membership: true,
            collect: true,
            keep_trace: true,
        };
        let first = run(7, &config).unwrap_or_else(|failure| panic!("{failure}"));
        let again = run(7, &config).unwrap_or_else(|failure| panic!("{failure}"));
        if first.log != again.log {
            std::fs::write("/tmp/sim-a.log", first.log.join("\n")).unwrap();
            std::fs::write("/tmp/sim-b.log", again.log.join("\n")).unwrap();
            panic!("the runs part");
        }
        assert_eq!(first, again);
        assert!(first.acknowledged > 0 && first.events > 100, "{first:?}");
        let other = run(8, &config).unwrap_or_else(|failure| panic!("{failure}"));
        assert_ne!(first.trace, other.trace);
    }
}
