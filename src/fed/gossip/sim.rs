//! An in-memory network of gossip cores: transport is a function call, time a counter, and
//! randomness one seeded generator, so a run repeats exactly. Used by the unit tests and by
//! `benches/gossip.rs`.
//!
//! A round is synchronous: every instance ticks, every ask is answered from the state at the
//! start of the round, then the answers (and the askers' names) are applied; a candidate is
//! verified at once (it is an instance of the network, or it fails), and, as the runtime's
//! signed fetch of its instance document introduces the fetcher, learns the verifier.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Action, Candidate, Gossip, GossipConfig, GOSSIP_REPLY_MAX};
use crate::fed::policy::Policy;

/// Simulated time between two rounds.
const ROUND: Duration = Duration::from_secs(60);

/// Whom instance `i` is configured to bootstrap from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A random earlier instance (instance 0 bootstraps from nobody).
    RandomEarlier,
    /// Instance `i - 1`: a chain, the longest path a network of one bootstrap each can have.
    Chain,
}

/// Requests sent in a run, summed over all instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// `GET /api/s2s/peers` requests (each answered, or refused).
    pub asks: u64,
    /// Instance-document fetches to verify candidates.
    pub verifications: u64,
    /// Domain names carried by the replies.
    pub names: u64,
}

/// N gossip cores wired to each other.
pub struct Network {
    nodes: Vec<Gossip>,
    domains: Vec<String>,
    index: HashMap<String, usize>,
    now: i64,
    rng: StdRng,
    /// Rounds run so far.
    pub rounds: u32,
    /// Requests sent so far.
    pub traffic: Traffic,
}

impl Network {
    /// `n` instances `i0.sim` … with the topology's bootstraps, and no policy.
    pub fn new(n: usize, topology: Topology, seed: u64) -> Network {
        Network::with_policies(n, topology, seed, |_| Policy::default())
    }

    /// As [`Network::new`], instance `i` with `policy(i)`.
    pub fn with_policies(
        n: usize,
        topology: Topology,
        seed: u64,
        policy: impl Fn(usize) -> Policy,
    ) -> Network {
        let domains: Vec<String> = (0..n).map(Network::domain).collect();
        let config = GossipConfig {
            interval: ROUND,
            verify_retry: ROUND * 10,
            dev: false,
        };
        let mut network = Network {
            nodes: (0..n)
                .map(|i| Gossip::new(&domains[i], policy(i), config))
                .collect(),
            index: domains
                .iter()
                .enumerate()
                .map(|(i, d)| (d.clone(), i))
                .collect(),
            domains,
            now: 0,
            rng: StdRng::seed_from_u64(seed),
            rounds: 0,
            traffic: Traffic::default(),
        };
        for i in 1..n {
            let from = match topology {
                Topology::RandomEarlier => network.rng.gen_range(0..i),
                Topology::Chain => i - 1,
            };
            let domain = network.domains[from].clone();
            if let Some(candidate) = network.nodes[i].add_bootstrap(&domain, 0) {
                network.verify(i, candidate);
            }
        }
        network
    }

    /// The domain of instance `i`.
    pub fn domain(i: usize) -> String {
        format!("i{i}.sim")
    }

    pub fn node(&self, i: usize) -> &Gossip {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Gossip {
        &mut self.nodes[i]
    }

    /// Whether every instance knows every other one its policy allows.
    pub fn converged(&self) -> bool {
        self.nodes.iter().enumerate().all(|(i, node)| {
            self.domains
                .iter()
                .enumerate()
                .all(|(j, d)| i == j || !node.allows(d) || node.knows(d))
        })
    }

    /// Runs rounds until [`Network::converged`]; the number of rounds, or `None` after
    /// `max_rounds`.
    pub fn run_until_converged(&mut self, max_rounds: u32) -> Option<u32> {
        while !self.converged() {
            if self.rounds >= max_rounds {
                return None;
            }
            self.round();
        }
        Some(self.rounds)
    }

    /// One synchronous round.
    pub fn round(&mut self) {
        self.rounds += 1;
        self.now += i64::try_from(ROUND.as_millis()).unwrap_or(i64::MAX);
        let now = self.now;
        let mut asks = Vec::new();
        let mut verifications = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            for action in node.tick(now, &mut self.rng) {
                match action {
                    Action::Ask { peer, after } => asks.push((i, peer, after)),
                    Action::Verify(candidate) => verifications.push((i, candidate)),
                }
            }
        }
        // Answers from the state at the start of the round.
        let mut answers = Vec::new();
        for (asker, peer, after) in asks {
            self.traffic.asks += 1;
            let target = self.index.get(&peer).copied();
            let answer = target
                .filter(|&t| self.nodes[t].allows(&self.domains[asker]))
                .map(|t| {
                    let page = self.nodes[t].reply(after.as_deref(), GOSSIP_REPLY_MAX);
                    self.traffic.names += page.peers.len() as u64;
                    (t, page)
                });
            answers.push((asker, peer, answer));
        }
        for (i, candidate) in verifications {
            self.verify(i, candidate);
        }
        for (asker, peer, answer) in answers {
            let Some((target, list)) = answer else {
                self.nodes[asker].on_unreachable(&peer);
                continue;
            };
            let asker_domain = self.domains[asker].clone();
            if let Some(candidate) = self.nodes[target].on_asked_by(&asker_domain, now) {
                self.verify(target, candidate);
            }
            for candidate in self.nodes[asker].on_reply(&peer, list, now) {
                self.verify(asker, candidate);
            }
        }
    }

    /// Instance `i` fetches the candidate's instance document: it exists or it does not.
    fn verify(&mut self, i: usize, candidate: Candidate) {
        self.traffic.verifications += 1;
        if let Some(&j) = self.index.get(&candidate.domain) {
            self.nodes[i].on_verified(&candidate.domain, self.now);
            // The fetch of j's document was signed by i: j learns i (`introduced_by`).
            let fetcher = self.domains[i].clone();
            if let Some(back) = self.nodes[j].on_asked_by(&fetcher, self.now) {
                self.verify(j, back);
            }
        } else {
            self.nodes[i].on_verify_failed(&candidate.domain, self.now);
        }
    }
}
