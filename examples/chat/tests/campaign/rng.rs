//! A small seeded PRNG (SplitMix64), so that a campaign's fault schedule and
//! every client's and poster's choices come from one printed seed, with no
//! external crate. Timing still varies from run to run (processes, the
//! scheduler): the seed fixes what is done and when it is attempted, not
//! every interleaving.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent stream for one actor (a client, a poster), so that adding
    /// a client does not shift the fault schedule.
    pub fn fork(&self, stream: u64) -> Self {
        let mut mixed = Self(self.0 ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        Self(mixed.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is `0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Another node than `current` among `nodes` (EventSource clients and
    /// posters move on every retry, as behind a load balancer without sticky
    /// sessions).
    pub fn other(&mut self, current: usize, nodes: usize) -> usize {
        if nodes <= 1 {
            return 0;
        }
        (current + 1 + self.below(nodes as u64 - 1) as usize) % nodes
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_draws_and_forks_differ() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let draws: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        assert_eq!(draws, (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
        let (mut f1, mut f2) = (Rng::new(7).fork(1), Rng::new(7).fork(2));
        assert_ne!(f1.next_u64(), f2.next_u64());
        let mut r = Rng::new(3);
        for _ in 0..100 {
            let n = r.other(1, 3);
            assert!(n != 1 && n < 3);
        }
    }
}
