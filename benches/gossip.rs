//! Gossip convergence with the real gossip core (`rosewire::fed::gossip`), in memory: for
//! N = 16 … 1,024 instances, each configured with one bootstrap peer, the rounds until every
//! instance knows every other, against the goal 2 log2 N + 2 (issue 7), and the requests
//! sent. Run: `cargo bench --bench gossip` (SEEDS=n runs per row, default 5).

use rosewire::fed::gossip::sim::{Network, Topology};
use rosewire::fed::gossip::GOSSIP_REPLY_MAX;

/// Rounds after which a run counts as not converged.
const MAX_ROUNDS: u32 = 500;

fn main() {
    let seeds: u64 = std::env::var("SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!("gossip simulation: {seeds} seeds per row, reply cap {GOSSIP_REPLY_MAX}");
    println!();
    println!("| topology | N | log2 N | goal 2 log2 N + 2 | rounds (worst / mean) | met | asks / inst / round | verifications / inst / round | names received / inst / round |");
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|");
    for topology in [Topology::RandomEarlier, Topology::Chain] {
        for n in [16usize, 64, 256, 1024] {
            let log2 = (n as f64).log2();
            let goal = (2.0 * log2 + 2.0) as u32;
            let (mut worst, mut sum) = (0u32, 0u32);
            let (mut asks, mut verifications, mut names, mut inst_rounds) =
                (0u64, 0u64, 0u64, 0u64);
            let mut failed = false;
            for seed in 0..seeds {
                let mut network = Network::new(n, topology, seed);
                match network.run_until_converged(MAX_ROUNDS) {
                    Some(rounds) => {
                        worst = worst.max(rounds);
                        sum += rounds;
                    }
                    None => failed = true,
                }
                asks += network.traffic.asks;
                verifications += network.traffic.verifications;
                names += network.traffic.names;
                inst_rounds += n as u64 * u64::from(network.rounds.max(1));
            }
            let per = |x: u64| x as f64 / inst_rounds as f64;
            let rounds = if failed {
                format!("> {MAX_ROUNDS}")
            } else {
                format!("{worst} / {:.1}", f64::from(sum) / seeds as f64)
            };
            println!(
                "| {} | {n} | {log2:.0} | {goal} | {rounds} | {} | {:.2} | {:.2} | {:.1} |",
                match topology {
                    Topology::RandomEarlier => "random earlier",
                    Topology::Chain => "chain",
                },
                if !failed && worst <= goal {
                    "yes"
                } else {
                    "**no**"
                },
                per(asks),
                per(verifications),
                per(names),
            );
        }
    }
}
