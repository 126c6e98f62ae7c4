//! What the explorers share: a seeded generator, and the runner that plays
//! each seed on tokio's paused clock and names the seed that broke.

// Each explorer uses its part.
#![allow(dead_code)]

use std::future::Future;
use std::time::Instant;

/// A number from the environment variable `name`, if set.
pub fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// Plays `explore(seed, steps)` for each seed, each on a current-thread
/// runtime with a paused clock, handing each result to `done`. The seeds
/// and steps come from `{prefix}_SEEDS` (how many, from 1), `{prefix}_SEED`
/// (just that one) and `{prefix}_STEPS`, else the defaults. A seed that
/// panics is named, with how to replay it, and the panic goes on. Returns
/// how many seeds ran and how long they took.
pub fn run_seeds<T, F>(
    prefix: &str,
    default_seeds: u64,
    default_steps: usize,
    explore: impl Fn(u64, usize) -> F,
    mut done: impl FnMut(T),
) -> (u64, usize, std::time::Duration)
where
    F: Future<Output = T>,
{
    let steps = env_number(&format!("{prefix}_STEPS")).unwrap_or(default_steps as u64) as usize;
    let seeds: Vec<u64> = match env_number(&format!("{prefix}_SEED")) {
        Some(seed) => vec![seed],
        None => (1..=env_number(&format!("{prefix}_SEEDS")).unwrap_or(default_seeds)).collect(),
    };
    let began = Instant::now();
    for &seed in &seeds {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let explored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(explore(seed, steps))
        }));
        match explored {
            Ok(result) => done(result),
            Err(panic) => {
                eprintln!("seed {seed} broke the promise; rerun with {prefix}_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    (seeds.len() as u64, steps, began.elapsed())
}

/// xorshift64*: small, seeded, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}
